from django.urls import path
from guestbook import views

urlpatterns = [
    path("", views.index, name="index"),
]
# /health/ is answered by mysite.health, before any URL routing.
