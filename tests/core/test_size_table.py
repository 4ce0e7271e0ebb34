"""scripts/size_table.py measures what a reader sees: physical lines per file, and each function
from its first decorator to its last line, methods and nested functions named by their path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("size_table", REPO / "scripts" / "size_table.py")
sizes = importlib.util.module_from_spec(_spec)
sys.modules["size_table"] = sizes  # dataclasses look their module up there
_spec.loader.exec_module(sizes)

SOURCE = '''"""Doc."""


@decorator
def outer():
    def inner():
        return 1

    return inner


class Store:
    def get(self):
        return 2
'''


def test_files_and_functions_are_measured_from_the_source(tmp_path):
    (tmp_path / "prefloop").mkdir()
    (tmp_path / "prefloop" / "a.py").write_text(SOURCE)
    (tmp_path / "worker").mkdir()
    (tmp_path / "worker" / "b.py").write_text("x = 1\n")
    files, funcs = sizes.measure(tmp_path)
    assert files == [("prefloop/a.py", 14), ("worker/b.py", 1)]
    assert [(f.name, f.line, f.lines) for f in funcs] == [("outer", 4, 6), ("outer.inner", 6, 2), ("Store.get", 13, 2)]
    table = sizes.report(tmp_path, top=10, file_limit=10, function_limit=5)
    assert "    14 * prefloop/a.py" in table and "     6 * prefloop/a.py:4 outer" in table
    assert table.splitlines()[-1].split() == ["all", "2", "15", "14", "1", "3", "6", "1"]
