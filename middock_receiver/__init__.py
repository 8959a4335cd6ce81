"""middock: git push to deploy a docker compose stack on your own server."""

# The one version of middock: setup.py reads it from this line (as text), `middock --version`,
# `middock version` and `status` print it. Between releases it is the next release's .dev0
# (CHANGELOG.md: the `Unreleased` section becomes that release when it is cut).
__version__ = "0.5.0.dev0"
