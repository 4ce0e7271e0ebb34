"""The architecture holds: backend -> prefloop and worker -> prefloop, never backend -> worker,
never prefloop -> backend|worker, and the web tier never imports training code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENTRY_POINTS = {"prefloop/cli.py"}  # the command line dispatches to the tiers, lazily


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(package: str):
    return [p for p in (REPO / package).rglob("*.py")]


def test_shared_package_imports_neither_tier():
    for path in _files("prefloop"):
        rel = str(path.relative_to(REPO))
        if rel in ENTRY_POINTS or rel.startswith("prefloop/commands/"):
            continue
        bad = {m for m in imported_modules(path) if m.split(".")[0] in ("backend", "worker")}
        assert not bad, f"{rel} imports {bad}"


def test_backend_never_imports_worker_or_training_libraries():
    for path in _files("backend"):
        bad = {m for m in imported_modules(path) if m.split(".")[0] in ("worker", "trl", "accelerate", "datasets")}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_importing_the_app_loads_no_model_redis_or_cuda():
    """Building the app touches no torch, trl or Redis: gunicorn can import it cheaply and fork safely."""
    code = (
        "import sys; from prefloop.settings import Settings; from backend.app import create_app;"
        "create_app(Settings.from_env({}, redis_url='redis://127.0.0.1:1/0'));"
        "bad=[m for m in ('torch','trl','transformers','worker') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
