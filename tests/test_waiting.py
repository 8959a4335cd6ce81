"""How middock waits, without Docker: the pauses between asking again."""

from __future__ import annotations

import itertools

from middock_receiver import waiting


def test_pauses_start_short_and_double_up_to_the_last():
    assert list(itertools.islice(waiting.doubling(0.1, 0.5), 6)) == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
