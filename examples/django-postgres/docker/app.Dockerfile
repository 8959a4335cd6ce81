# The app service: Django under gunicorn. Built by docker/build-1-app.sh, with app/ as context.
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}
# gunicorn takes its number of workers from WEB_CONCURRENCY (a config var can change it), and
# gunicorn 25.1+ puts its control socket in XDG_RUNTIME_DIR (else in $HOME, not writable here).
ENV PYTHONUNBUFFERED=1 WEB_CONCURRENCY=2 XDG_RUNTIME_DIR=/tmp
WORKDIR /srv/app
COPY requirements.txt ./
# A base image that already has the packages (say Debian's python3-django, gunicorn and
# python3-psycopg2) needs no network; any other gets them from PyPI.
RUN python3 -c 'import django, gunicorn, psycopg2' 2>/dev/null || pip install --no-cache-dir -r requirements.txt
COPY . ./
# Static files are collected here, into /srv/app/staticfiles, for the frontend image to copy.
RUN python3 manage.py collectstatic --noinput && python3 -m compileall -q .
USER nobody
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "mysite.wsgi"]
