"""Model artifacts: versions, the "current" pointer, atomic publishing (loading them is
`prefloop.models`' job).

Layout (MODEL_DIR shared by backend and workers):
    MODEL_DIR/<project>/reward/<version>/   weights, tokenizer, train_config.json, metrics.json, data.json, curve.png
    MODEL_DIR/<project>/policy/<version>/   the same, plus samples
    MODEL_DIR/<project>/current.json        {"reward": "<version>"|null, "policy": "<version>"|null}

A run writes into `staging()` (a hidden temporary directory on the same filesystem) and calls
`publish()`, which renames it into place and then switches the pointer with `os.replace`. A run that
fails or is killed leaves only a `.tmp-*` directory behind (never listed, swept later); the previous
version keeps serving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from prefloop.errors import ModelNotFound

logger = logging.getLogger(__name__)

KINDS = ("reward", "policy")
VERSION_PREFIX = {"reward": "rm", "policy": "pi"}
BASE_POLICY = "pi-base"
NO_REWARD = "rm-none"


def new_version(kind: str) -> str:
    """A version string that sorts in creation order: rm-20261127T061502123456."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"{VERSION_PREFIX[kind]}-{stamp}"


def serving_version(current: dict[str, str | None]) -> str:
    """The `model_version` Label Studio sees: which reward model and policy serve, together."""
    return f"{current.get('reward') or NO_REWARD}+{current.get('policy') or BASE_POLICY}"


class ArtifactStore:
    def __init__(self, model_dir: Path | str):
        self.root = Path(model_dir)

    def project_dir(self, project_id: int) -> Path:
        return self.root / str(int(project_id))

    def kind_dir(self, project_id: int, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}; expected one of {KINDS}")
        return self.project_dir(project_id) / kind

    def version_dir(self, project_id: int, kind: str, version: str) -> Path:
        path = self.kind_dir(project_id, kind) / version
        if not version.startswith(VERSION_PREFIX[kind] + "-") or "/" in version or not path.is_dir():
            raise ModelNotFound(f"{kind} version {version!r} does not exist for project {project_id}")
        return path

    # --- the pointer ------------------------------------------------------------------------------
    def current(self, project_id: int) -> dict[str, str | None]:
        path = self.project_dir(project_id) / "current.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {"reward": None, "policy": None}
        return {"reward": data.get("reward"), "policy": data.get("policy")}

    def current_path(self, project_id: int, kind: str) -> Path | None:
        version = self.current(project_id).get(kind)
        return self.kind_dir(project_id, kind) / version if version else None

    def model_version(self, project_id: int) -> str:
        return serving_version(self.current(project_id))

    def set_current(self, project_id: int, kind: str, version: str | None) -> dict[str, str | None]:
        """Point `kind` at `version` (which must exist), atomically; the other kind is kept."""
        if version is not None:
            self.version_dir(project_id, kind, version)
        with self._lock(project_id):
            current = self.current(project_id)
            current[kind] = version
            _atomic_write_json(self.project_dir(project_id) / "current.json", current)
        logger.info("project %s now serves %s", project_id, serving_version(current))
        return current

    # --- publishing ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def staging(self, project_id: int, kind: str) -> Iterator[Path]:
        """A temporary directory to train into; removed if the block raises."""
        parent = self.kind_dir(project_id, kind)
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def publish(self, project_id: int, kind: str, staged: Path, *, make_current: bool = True) -> str:
        """Rename a finished staging directory into place as a new version and (by default) switch
        the pointer to it. Returns the version."""
        if not (staged / "config.json").exists():
            raise ModelNotFound(f"refusing to publish {staged}: it holds no config.json (an unfinished run?)")
        version = new_version(kind)
        target = self.kind_dir(project_id, kind) / version
        (staged / "version.json").write_text(json.dumps({"version": version, "kind": kind, "published_at": time.time()}))
        os.replace(staged, target)  # atomic on one filesystem
        _fsync_dir(target.parent)
        if make_current:
            self.set_current(project_id, kind, version)
        return version

    # --- listing ---------------------------------------------------------------------------------
    def versions(self, project_id: int, kind: str) -> list[dict[str, Any]]:
        """Published versions of `kind`, oldest first, each with its metrics.json (if any)."""
        parent = self.kind_dir(project_id, kind)
        if not parent.is_dir():
            return []
        current = self.current(project_id).get(kind)
        out = []
        for path in sorted(parent.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            metrics = read_json(path / "metrics.json")
            out.append({"version": path.name, "kind": kind, "current": path.name == current,
                        "path": str(path), "metrics": metrics})
        return out

    def all_versions(self, project_id: int) -> list[dict[str, Any]]:
        return self.versions(project_id, "reward") + self.versions(project_id, "policy")

    def projects(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.name.isdigit())

    def sweep_staging(self, project_id: int, older_than_s: float = 6 * 3600) -> int:
        """Remove leftovers of killed runs. Returns how many were removed."""
        removed = 0
        for kind in KINDS:
            parent = self.kind_dir(project_id, kind)
            for tmp in parent.glob(".tmp-*") if parent.is_dir() else []:
                if time.time() - tmp.stat().st_mtime > older_than_s:
                    shutil.rmtree(tmp, ignore_errors=True)
                    removed += 1
        return removed

    @contextlib.contextmanager
    def _lock(self, project_id: int) -> Iterator[None]:
        d = self.project_dir(project_id)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (used for metrics, configs and reports inside a staging directory)."""
    _atomic_write_json(Path(path), data)


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in `path`, or `default` when the file is missing, unreadable or not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
