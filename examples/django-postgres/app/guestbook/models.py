from django.db import models


class Note(models.Model):
    """A line in the guestbook."""

    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.text[:50]
