"""Preview apps: a push of a branch deploys a running copy of it, APP--BRANCH, at its own URL
(`apps:set APP previews on`); deleting the branch destroys it (PRODUCT.md §10).

A preview is an app like any other (its own state folder, releases, config, routes), which
deploys from its parent's repository (`App.parent`) and is marked by its record
(`state/previews.py`). `create` makes one for a pushed branch, `destroy` takes one away.
"""
