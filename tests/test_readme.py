"""The README's contents: a link to each of its sections, in order."""

from __future__ import annotations

import re

from support.middock import ROOT


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_contents_list_every_section_in_order() -> None:
    readme = (ROOT / "README.md").read_text()
    headings = [line[3:] for line in readme.splitlines() if line.startswith("## ") and line != "## Contents"]
    listed = readme.split("## Contents\n", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^- \[(.+)\]\(#(.+)\)$", listed, re.MULTILINE) == [(h, anchor(h)) for h in headings]
