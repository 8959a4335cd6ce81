"""middock: git push to deploy a docker compose stack on your own server."""

__version__ = "0.1.0"
