"""The architecture holds for every module, with no exemptions: the core imports no tier, the
tiers never import each other or the command line, the web tier loads no training library, and
no blueprint imports the app factory (no import circle inside `backend`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph)


def test_no_module_imports_across_a_forbidden_arrow():
    assert graph.violations(REPO) == []


def test_the_checker_catches_a_back_arrow(tmp_path):
    """A lazy import inside a function of the core counts as much as a top-level one."""
    for package in graph.PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "prefloop" / "bad.py").write_text("def f():\n    from worker.generation import Generator\n")
    (tmp_path / "worker" / "ok.py").write_text("import prefloop.settings\n")
    (tmp_path / "backend" / "bad.py").write_text("import trl\n")
    found = graph.violations(tmp_path)
    assert sorted(line.split()[0] for line in found) == ["backend/bad.py", "prefloop/bad.py"], found


def test_blueprints_do_not_import_the_app_factory():
    for path in (REPO / "backend").glob("*.py"):
        if path.name != "app.py":
            names = graph.imported_modules(path.read_text())
            assert "backend.app" not in names, f"{path.name} imports backend.app (use backend.context)"


def test_importing_the_app_loads_no_model_redis_or_cuda():
    """Building the app touches no torch, trl or Redis: gunicorn can import it cheaply and fork safely."""
    code = (
        "import sys; from prefloop.settings import Settings; from backend.app import create_app;"
        "create_app(Settings.from_env({}, redis_url='redis://127.0.0.1:1/0'));"
        "bad=[m for m in ('torch','trl','transformers','worker','cli') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_label_configs_ship_as_package_data():
    """Found through importlib.resources, as in a wheel or the image, not by walking up from a file."""
    from prefloop.label_config import load_label_config, parse_pairwise_config

    assert parse_pairwise_config(load_label_config("pairwise")).from_name
