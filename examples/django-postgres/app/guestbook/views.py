import os

from django.shortcuts import render

from .models import Note


def index(request):
    """The latest notes, the greeting and the release that serves them."""
    return render(
        request,
        "guestbook/index.html",
        {
            "notes": Note.objects.order_by("-created")[:50],
            "greeting": os.environ.get("GREETING", "Hello"),
            "release": os.environ.get("MIDDOCK_RELEASE", "dev"),
        },
    )
