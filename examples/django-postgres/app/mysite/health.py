"""/health/ for the container healthcheck and middock's health gate.

A middleware first in MIDDLEWARE, so it answers before anything else runs: it touches no
database (a slow or restarting PostgreSQL must not get the app container restarted), and it
comes before Django's ALLOWED_HOSTS check (the container's own healthcheck asks for
127.0.0.1:8000, which a production ALLOWED_HOSTS would refuse with 400).
"""

from django.http import HttpResponse

HEALTH_PATH = "/health/"


def health_check(get_response):
    def middleware(request):
        if request.path == HEALTH_PATH:
            return HttpResponse("ok\n", content_type="text/plain")
        return get_response(request)

    return middleware
