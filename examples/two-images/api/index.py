"""Build the api's index: every function, class and method of this Python's standard library,
with its signature, the first line of its docstring and its source, in a SQLite full-text table.

The image's build runs it (a data step, as a real app's build fills a search index or compiles
its translations), so the running api only reads.

In development: python3 api/index.py api/symbols.db
"""

import ast
import sqlite3
import sys
import sysconfig
from pathlib import Path

SKIPPED = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo"}
SCHEMA = (
    "CREATE VIRTUAL TABLE symbols USING fts5(name, qualname, module, kind, signature, summary, source, line UNINDEXED)"
)


def modules(stdlib: Path):
    """(module name, source file) of every module of the standard library, by name."""
    for path in sorted(stdlib.rglob("*.py")):
        relative = path.relative_to(stdlib)
        if SKIPPED.intersection(relative.parts) or "-" in path.stem:
            continue
        parts = relative.with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def symbols(module: str, source: str):
    """The rows of a module: its public functions and classes, and their methods."""
    lines = source.splitlines(keepends=True)

    def visit(body, prefix):
        for node in body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            qualname = prefix + node.name
            summary = (ast.get_docstring(node) or "").strip().split("\n")[0]
            code = "".join(lines[node.lineno - 1 : node.end_lineno])
            if isinstance(node, ast.ClassDef):
                yield node.name, qualname, module, "class", "", summary, code, node.lineno
                yield from visit(node.body, qualname + ".")
            else:
                kind = "method" if prefix else "function"
                signature = f"({ast.unparse(node.args)})"
                yield node.name, qualname, module, kind, signature, summary, code, node.lineno

    yield from visit(ast.parse(source).body, "")


def build(database: Path) -> int:
    database.unlink(missing_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    count = 0
    with sqlite3.connect(database) as db:
        db.execute(SCHEMA)
        for module, path in modules(stdlib):
            try:
                rows = list(symbols(module, path.read_text(encoding="utf-8")))
            except (SyntaxError, UnicodeDecodeError):
                continue  # a file kept to test bad syntax or encodings
            db.executemany("INSERT INTO symbols VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            count += len(rows)
        db.execute("INSERT INTO symbols(symbols) VALUES ('optimize')")
    return count


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "symbols.db")
    print(f"indexed {build(target)} functions, classes and methods into {target}")
