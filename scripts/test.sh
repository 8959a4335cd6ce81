#!/usr/bin/env bash
# The test command: set up a fresh Debian 12 machine (as root), lint, then run the suite in tiers: the unit tier
# first (no Docker, under a minute), stopping there on a failure; then the rest (docker, bed). With arguments
# (`scripts/test.sh tests/test_x.py -k y`) it runs exactly those, in one pytest, and exits as it does.
# MIDDOCK_TEST_WORKERS sets how many tests run at once in the second tier (default 4).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-setup.sh
# A plain path entry for the source tree (compat mode), not setuptools' import finder: the suite starts
# thousands of Python processes, and the finder costs each of them about 8 ms before anything runs.
python3 -m pip install -q --disable-pip-version-check -e . --config-settings editable_mode=compat 2>&1 |
    grep -v -e '^WARNING' -e '^ *Location' || true
ruff check .
ruff format --check .

# pytest exits 5 when no test is selected (a tier with no test in it, a -k that matches none): not a failure.
pytest_run() {
    local status=0
    python3 -m pytest --durations=15 "$@" || status=$?  # the slowest tests: the suite stays under 25 minutes
    if [ "$status" -eq 5 ]; then
        return 0
    fi
    return "$status"
}

if [ "$#" -gt 0 ]; then
    exec python3 -m pytest --durations=15 "$@"
fi
pytest_run -m unit
# The rest in parallel: pytest-xdist's workers take a group (`xdist_group`: each bed, the tests sharing the cron
# daemon or install.sh's default ports, the load tests that must drop no request) whole, and other tests one by one.
# Most of a test's time is spent waiting on Docker, so 4 workers keep the 2 cores busy.
pytest_run -m "not unit" -n "${MIDDOCK_TEST_WORKERS:-4}" --dist loadgroup --no-loadscope-reorder # longest first: conftest.py
