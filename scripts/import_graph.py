#!/usr/bin/env python3
"""The import graph between prefloop's top-level packages, read from the source with `ast` (every
import statement, including those inside functions). `python scripts/import_graph.py [ROOT]`
prints each arrow with how many modules draw it and the rule it breaks, if any; the boundary test
(tests/core/test_boundaries.py) uses the same functions, so what this prints is what CI enforces.

Rules: the core (`prefloop`) imports no tier; `backend` (web) and `worker` (jobs) never import each
other or the command line; the web tier loads no training library; only `cli` imports everything.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("prefloop", "backend", "worker", "cli", "label_config")
FORBIDDEN = {
    "prefloop": {"backend", "worker", "cli"},
    "label_config": {"prefloop", "backend", "worker", "cli"},
    "backend": {"worker", "cli", "trl", "accelerate", "datasets", "peft"},
    "worker": {"backend", "cli"},
    "cli": set(),
}


def imported_modules(source: str) -> set[str]:
    """Absolute module names a source file imports, anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(root: Path) -> Iterator[tuple[str, str, set[str]]]:
    """(package, path relative to root, imported names) for every module of every package."""
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            yield package, path.relative_to(root).as_posix(), imported_modules(path.read_text(encoding="utf-8"))


def violations(root: Path) -> list[str]:
    out = []
    for package, rel, names in modules(root):
        bad = sorted(n for n in names if n.split(".")[0] in FORBIDDEN[package])
        out += [f"{rel} imports {name} ({package} must not import {name.split('.')[0]})" for name in bad]
    return out


def edges(root: Path) -> Counter[tuple[str, str]]:
    """(from package, to package) -> number of modules with such an import."""
    count: Counter[tuple[str, str]] = Counter()
    for package, _rel, names in modules(root):
        for target in {n.split(".")[0] for n in names} & set(PACKAGES) - {package}:
            count[(package, target)] += 1
    return count


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent
    for (src, dst), n in sorted(edges(root).items()):
        mark = "  <- forbidden" if dst in FORBIDDEN[src] else ""
        print(f"{src:>12} -> {dst:<12} {n:3d} module(s){mark}")
    bad = violations(root)
    print(f"{len(bad)} forbidden import(s)")
    for line in bad:
        print("  " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
