"""The old name of the git hooks' entry point, forwarded to push/hook.py: kept through the 0.3
releases (the first with push/), removed in 0.4.0.

Every app's repository runs its hooks by module name (`python -I -m middock_receiver.hook
post-receive`). New repositories' hooks name `middock_receiver.push.hook` (hooks/), and
install.sh rewrites the existing ones (`middock refresh`), but only after the new package is in
place, and only for the deploy user it is given. Keeping this name one release, rather than
relying on that rewrite alone, keeps every server pushing across the upgrade: a push in between,
and a repository of a deploy user install.sh was not run for, still deploy.
"""

import sys

from .push.hook import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
