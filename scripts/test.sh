#!/usr/bin/env bash
# The test command: set up a fresh Debian 12 machine (as root), lint, then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-setup.sh
python3 -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v -e '^WARNING' -e '^ *Location' || true
ruff check .
ruff format --check .
exec python3 -m pytest --durations=15 "$@"  # the slowest tests: the suite stays under 25 minutes
