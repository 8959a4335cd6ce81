"""Render the site: a page a module of modules.txt, from its docstrings (the standard library's
pydoc), and an index of them; each page also gzipped at the highest level, as a frontend's
build bundles and compresses its assets once so that serving them costs nothing.

The image's build runs it; the running web only serves what it wrote.

In development: python3 web/render.py web/site
"""

import gzip
import importlib
import json
import pydoc
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def listed() -> list[str]:
    lines = (HERE / "modules.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def write(path: Path, text: str) -> None:
    data = text.encode()
    path.write_bytes(data)
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(data, compresslevel=9, mtime=0))


def render(site: Path) -> dict[str, str]:
    """Write every module's page; returns each module's first line of documentation."""
    site.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for name in listed():
        module = importlib.import_module(name)
        page = pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, name))
        write(site / f"{name}.html", page)
        summaries[name] = pydoc.splitdoc(pydoc.getdoc(module))[0]
    write(site / "index.json", json.dumps(summaries, indent=1))
    return summaries


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else HERE / "site")
    pages = render(target)
    size = sum(path.stat().st_size for path in target.glob("*.html"))
    print(f"rendered {len(pages)} pages, {size / 1e6:.1f} MB, into {target}")
