"""Per-process state of a worker: the settings read at start, and models loaded once per process."""

from __future__ import annotations

import time
from typing import Any

from prefloop.models import ModelCache
from prefloop.settings import Settings

_settings: Settings | None = None
models = ModelCache()


def init(settings: Settings) -> None:
    global _settings
    _settings = settings


def settings() -> Settings:
    """The settings `prefloop worker` read at start (read from the environment if a job runs elsewhere)."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


class Progress:
    """Writes progress into the current job's meta (visible through /jobs and `prefloop jobs`),
    at most once per `every` seconds unless forced or the stage changes (a new stage is always shown)."""

    def __init__(self, stage: str, total: int | None = None, every: float = 1.0):
        from rq import get_current_job

        self.job = get_current_job()
        self.stage = stage
        self.total = total
        self.every = every
        self._last = 0.0
        self.update(0, force=True)

    def update(self, done: int, *, stage: str | None = None, force: bool = False, **extra: Any) -> None:
        if stage is not None and stage != self.stage:
            self.stage, force = stage, True
        now = time.monotonic()
        if self.job is None or (not force and now - self._last < self.every):
            return
        self._last = now
        self.job.meta["stage"] = self.stage
        self.job.meta["progress"] = {"done": done, "total": self.total, **extra}
        self.job.save_meta()  # type: ignore[no-untyped-call]  # rq leaves Job.save_meta unannotated
