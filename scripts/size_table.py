#!/usr/bin/env python3
"""File and function sizes of prefloop's Python code, read with `ast`.

`python scripts/size_table.py [ROOT] [--top N] [--file-limit LINES] [--function-limit LINES] [--json]`
prints, for ROOT (default: this checkout): lines per file, largest first, with every file over the
file limit marked; the longest functions and methods (decorators included); and a summary per
top-level folder. ROOT can be any checkout, e.g. an older commit (`git worktree add /tmp/old
<commit>`), so two trees compare with the same measure. Lines are physical lines (blank lines and
comments count, as a reader sees them).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

FOLDERS = ("prefloop", "backend", "worker", "cli", "label_config", "tests", "scripts", "bench")
FILE_LIMIT = 300
FUNCTION_LIMIT = 60


@dataclass(frozen=True)
class Function:
    path: str
    name: str  # Class.method or function (nested functions as outer.inner)
    line: int
    lines: int


def python_files(root: Path) -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts)


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def functions(path: Path, rel: str) -> list[Function]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[Function] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                end = child.end_lineno or child.lineno
                out.append(Function(rel, prefix + child.name, start, end - start + 1))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def measure(root: Path) -> tuple[list[tuple[str, int]], list[Function]]:
    files, funcs = [], []
    for path in python_files(root):
        rel = path.relative_to(root).as_posix()
        files.append((rel, line_count(path)))
        funcs += functions(path, rel)
    files.sort(key=lambda f: (-f[1], f[0]))
    funcs.sort(key=lambda f: (-f.lines, f.path, f.line))
    return files, funcs


def report(root: Path, top: int, file_limit: int, function_limit: int) -> str:
    files, funcs = measure(root)
    out = [f"# sizes of {root}", "", f"## files (lines), largest {top}; * = over {file_limit}", ""]
    out += [f"{n:6d} {'*' if n > file_limit else ' '} {rel}" for rel, n in files[:top]]
    out += ["", f"## functions (lines), longest {top}; * = over {function_limit}", ""]
    out += [f"{f.lines:6d} {'*' if f.lines > function_limit else ' '} {f.path}:{f.line} {f.name}" for f in funcs[:top]]
    header = f"{'folder':<14}{'files':>6}{'lines':>8}{'max':>6}{'>limit':>8}{'funcs':>7}{'fn max':>8}{'fn >limit':>10}"
    out += ["", "## per folder", "", header]

    def row(name: str, sizes: list[int], lengths: list[int]) -> str:
        over_files = sum(n > file_limit for n in sizes)
        over_funcs = sum(n > function_limit for n in lengths)
        return (
            f"{name:<14}{len(sizes):>6}{sum(sizes):>8}{max(sizes, default=0):>6}{over_files:>8}"
            f"{len(lengths):>7}{max(lengths, default=0):>8}{over_funcs:>10}"
        )

    for folder in FOLDERS:
        sizes = [n for rel, n in files if rel.split("/")[0] == folder]
        if sizes:
            out.append(row(folder, sizes, [f.lines for f in funcs if f.path.split("/")[0] == folder]))
    out.append(row("all", [n for _rel, n in files], [f.lines for f in funcs]))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--top", type=int, default=25, help="rows in each table (default 25)")
    parser.add_argument(
        "--file-limit", type=int, default=FILE_LIMIT, help=f"mark files over this (default {FILE_LIMIT})"
    )
    parser.add_argument(
        "--function-limit",
        type=int,
        default=FUNCTION_LIMIT,
        help=f"mark functions over this (default {FUNCTION_LIMIT})",
    )
    parser.add_argument("--json", action="store_true", help="every file and function as JSON instead of the tables")
    args = parser.parse_args(argv)
    if not (args.root / "prefloop").is_dir():
        parser.error(f"{args.root} is not a prefloop checkout (no prefloop/ folder)")
    if args.json:
        files, funcs = measure(args.root)
        print(json.dumps({"files": dict(files), "functions": [asdict(f) for f in funcs]}, indent=1))
    else:
        print(report(args.root, args.top, args.file_limit, args.function_limit))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
