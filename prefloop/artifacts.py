"""Model artifacts: versions, the "current" pointer, atomic publishing (loading them is
`prefloop.models`' job).

Layout (MODEL_DIR shared by backend and workers):
    MODEL_DIR/<project>/reward/<version>/   weights or LoRA adapter, tokenizer, train_config.json, metrics.json,
                                            data.json, curve.png
    MODEL_DIR/<project>/policy/<version>/   the same, plus samples
    MODEL_DIR/<project>/current.json        {"reward": "<version>"|null, "policy": "<version>"|null}
    MODEL_DIR/<project>/pinned.json         {"reward": [<version>, ...], "policy": [...]}: never deleted

Retention: after each publish, only the newest `keep_versions` (KEEP_VERSIONS, default 5) versions
of that project and kind stay; the current and the pinned versions are never deleted. Each version is
a full copy of the weights, so without this every training run would add one to the disk for good.

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
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefloop.errors import BadRequest, ModelNotFound

logger = logging.getLogger(__name__)

KINDS = ("reward", "policy")
VERSION_PREFIX = {"reward": "rm", "policy": "pi"}
BASE_POLICY = "pi-base"
NO_REWARD = "rm-none"
DEFAULT_KEEP_VERSIONS = 5
MAX_VERSION_CHARS = 64
"""Versions are named rm-/pi- plus a timestamp (25 characters); anything much longer is not one, and
is refused before it reaches the filesystem (a 300-character name fails with "File name too long")."""
MAX_PROJECT_ID = 10**10 - 1  # prefloop.labelstudio.MAX_PROJECT_ID_DIGITS


def valid_version_name(version: object, kind: str | None = None) -> bool:
    """Whether `version` can be a published version's directory name (of `kind`, when given)."""
    prefixes = [VERSION_PREFIX[kind]] if kind else list(VERSION_PREFIX.values())
    return (
        isinstance(version, str)
        and 3 < len(version) <= MAX_VERSION_CHARS
        and any(version.startswith(p + "-") for p in prefixes)
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in version)
        and ".." not in version
    )


def new_version(kind: str) -> str:
    """A version string that sorts in creation order: rm-20261127T061502123456."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"{VERSION_PREFIX[kind]}-{stamp}"


def serving_version(current: dict[str, str | None]) -> str:
    """The `model_version` Label Studio sees: which reward model and policy serve, together."""
    return f"{current.get('reward') or NO_REWARD}+{current.get('policy') or BASE_POLICY}"


class ArtifactStore:
    def __init__(self, model_dir: Path | str, keep_versions: int = DEFAULT_KEEP_VERSIONS):
        self.root = Path(model_dir)
        self.keep_versions = keep_versions  # KEEP_VERSIONS; 0 keeps every version

    def project_dir(self, project_id: int) -> Path:
        if isinstance(project_id, str) and project_id.isascii() and project_id.isdigit() and len(project_id) <= 10:
            project_id = int(project_id)
        if isinstance(project_id, bool) or not isinstance(project_id, int) or not 0 < project_id <= MAX_PROJECT_ID:
            raise BadRequest("a project id is a positive integer of at most 10 digits")
        return self.root / str(project_id)

    def kind_dir(self, project_id: int, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}; expected one of {KINDS}")
        return self.project_dir(project_id) / kind

    def version_dir(self, project_id: int, kind: str, version: str) -> Path:
        if not valid_version_name(version, kind):
            short = isinstance(version, str) and len(version) <= MAX_VERSION_CHARS
            shown = version if short else f"{str(version)[:40]}..."
            raise ModelNotFound(
                f"{kind} version {shown!r} does not exist for project {project_id} (a {kind} version "
                f"is named {VERSION_PREFIX[kind]}-<timestamp>)"
            )
        path = self.kind_dir(project_id, kind) / version
        if not path.is_dir():
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
        if not any((staged / name).exists() for name in ("config.json", "adapter_config.json")):  # weights or adapter
            raise ModelNotFound(
                f"refusing to publish {staged}: it holds no config.json or adapter_config.json (an unfinished run?)"
            )
        version = new_version(kind)
        target = self.kind_dir(project_id, kind) / version
        (staged / "version.json").write_text(
            json.dumps({"version": version, "kind": kind, "published_at": time.time()})
        )
        os.replace(staged, target)  # atomic on one filesystem
        _fsync_dir(target.parent)
        if make_current:
            self.set_current(project_id, kind, version)
        self.prune(project_id, kind)
        return version

    # --- retention -------------------------------------------------------------------------------
    def pinned(self, project_id: int) -> dict[str, list[str]]:
        data = read_json(self.project_dir(project_id) / "pinned.json", {}) or {}
        return {kind: [v for v in data.get(kind) or [] if isinstance(v, str)] for kind in KINDS}

    def pin(self, project_id: int, kind: str, version: str, *, pinned: bool = True) -> list[str]:
        """Keep `version` whatever KEEP_VERSIONS says (pinned=False lets retention delete it again)."""
        if pinned:
            self.version_dir(project_id, kind, version)
        with self._lock(project_id):
            pins = self.pinned(project_id)
            pins[kind] = sorted(set(pins[kind]) | {version}) if pinned else [v for v in pins[kind] if v != version]
            _atomic_write_json(self.project_dir(project_id) / "pinned.json", pins)
        return pins[kind]

    def prune(self, project_id: int, kind: str, keep: int | None = None) -> list[str]:
        """Delete all but the newest `keep` (default: keep_versions) versions of `kind`, never the
        current or a pinned one. Returns the deleted versions. A version leaves the listing at once
        (renamed to a hidden directory) and its files are removed after."""
        keep = self.keep_versions if keep is None else keep
        if keep <= 0:
            return []
        with self._lock(project_id):
            names = [v["version"] for v in self.versions(project_id, kind)]  # oldest first
            protected = set(names[-keep:]) | set(self.pinned(project_id)[kind]) | {self.current(project_id).get(kind)}
            doomed = [name for name in names if name not in protected]
            parent = self.kind_dir(project_id, kind)
            for name in doomed:
                trash = parent / f".deleted-{name}"
                os.replace(parent / name, trash)
                shutil.rmtree(trash, ignore_errors=True)
        if doomed:
            logger.info(
                "project %s: deleted %d old %s version(s) (KEEP_VERSIONS=%d): %s",
                project_id,
                len(doomed),
                kind,
                keep,
                ", ".join(doomed),
            )
        return doomed

    # --- listing ---------------------------------------------------------------------------------
    def versions(self, project_id: int, kind: str) -> list[dict[str, Any]]:
        """Published versions of `kind`, oldest first, each with its metrics.json (if any)."""
        parent = self.kind_dir(project_id, kind)
        if not parent.is_dir():
            return []
        current = self.current(project_id).get(kind)
        pinned = set(self.pinned(project_id)[kind])
        out = []
        for path in sorted(parent.iterdir()):
            if path.name.startswith(".") or not path.is_dir():
                continue
            metrics = read_json(path / "metrics.json")
            out.append(
                {
                    "version": path.name,
                    "kind": kind,
                    "current": path.name == current,
                    "pinned": path.name in pinned,
                    "path": str(path),
                    "metrics": metrics,
                }
            )
        return out

    def all_versions(self, project_id: int) -> list[dict[str, Any]]:
        return self.versions(project_id, "reward") + self.versions(project_id, "policy")

    def projects(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in self.root.iterdir()
            if p.name.isascii() and p.name.isdigit() and 0 < int(p.name) <= MAX_PROJECT_ID
        )

    def sweep_staging(self, project_id: int, older_than_s: float = 6 * 3600) -> int:
        """Remove leftovers of killed runs. Returns how many were removed."""
        removed = 0
        for kind in KINDS:
            parent = self.kind_dir(project_id, kind)
            leftovers = [*parent.glob(".tmp-*"), *parent.glob(".deleted-*")] if parent.is_dir() else []
            for tmp in leftovers:
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
