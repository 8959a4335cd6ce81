"""The pytest-xdist groups several test modules share (`--dist loadgroup` gives a group's tests to
one worker, one after another). A group used by one module only is written there."""

from __future__ import annotations

import pytest

# The tests that must see 0 failed requests under load: two loads at once would compete for the
# machine's two cores.
ZERO_DROP = pytest.mark.xdist_group("zero-drop")
