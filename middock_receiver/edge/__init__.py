"""The edge: the proxies in front of the apps. Caddy owns ports 80 and 443, the domains and
their certificates; HAProxy gives each web app its own port and two slots (blue, green) that a
deploy switches between without dropping a request. `control` is what the pipeline and the
commands use; `routes` and `settings` are the records; `haproxy`, `caddy` and `proxies` speak
to the two programs."""
