"""What request handlers share in one process, and how a handler reaches it. Blueprints import
this module, never `backend.app`, so the app factory is the only module that imports them all."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask, current_app

from prefloop.artifacts import ArtifactStore
from prefloop.models import ModelCache
from prefloop.queue import JobQueue
from prefloop.settings import Settings

MAX_BODY = 64 * 1024 * 1024  # Label Studio sends TASKS_CREATED in batches of 5,000 tasks and
# "Retrieve Predictions" with every selected task: generous, but bounded.


@dataclass
class Context:
    """What request handlers share in one process."""

    settings: Settings
    queue: JobQueue
    store: ArtifactStore
    models: ModelCache = field(default_factory=ModelCache)


def context(app: Flask | None = None) -> Context:
    ctx: Context = (app or current_app).extensions["prefloop"]
    return ctx
