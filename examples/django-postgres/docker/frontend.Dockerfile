# The frontend: nginx with our nginx.conf and the app's collected static files. Built by
# docker/build-2-frontend.sh, with docker/ as context, after the app image (APP_IMAGE).
ARG NGINX_IMAGE=nginx:1.27
ARG APP_IMAGE=myapp-app:dev
FROM ${APP_IMAGE} AS app

FROM ${NGINX_IMAGE}
# Our nginx.conf includes neither conf.d/ nor sites-enabled/; drop their default sites anyway.
RUN rm -f /etc/nginx/conf.d/default.conf /etc/nginx/sites-enabled/default
COPY nginx.conf /etc/nginx/nginx.conf
COPY --from=app /srv/app/staticfiles /srv/static
# The same start on every base: no entrypoint scripts of the official image, nginx in the
# foreground (`daemon off` is in nginx.conf), and SIGQUIT for a graceful stop.
ENTRYPOINT []
STOPSIGNAL SIGQUIT
EXPOSE 80
CMD ["nginx"]
