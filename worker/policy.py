"""Which policy answers for a project, and the per-process cache that keeps it loaded.

`BASE_MODEL` answers (as "pi-base") until PPO publishes a policy for the project; then the
project's current published version does. A worker keeps loaded policies in `POLICIES`: the RQ
parent (worker/main.py `PrefloopWorker`) fills it on CPU before forking a work-horse, the horse
inherits the weights copy-on-write and moves them to its device, and a new version is loaded once
when the project's pointer moves to it.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

from prefloop.artifacts import BASE_POLICY, ArtifactStore
from prefloop.settings import Settings
from worker.generation import Generator

logger = logging.getLogger(__name__)


class PolicyCache:
    """Generators by source directory, least recently used evicted beyond `size`. A worker keeps
    one instance per process; the RQ parent fills it before forking, so work-horses inherit the
    loaded weights (copy-on-write) instead of reading them per job."""

    def __init__(self, size: int = 2):
        self.size = size
        self._entries: OrderedDict[str, Generator] = OrderedDict()
        self.loads = 0

    def get(self, source: str, version: str, *, device: str = "cpu") -> Generator:
        source = str(source)
        gen = self._entries.get(source)
        if gen is None:
            logger.info("loading policy %s (%s) in process %s", version, source, os.getpid())
            gen = Generator.load(source, version, device=device)
            self.loads += 1
            self._entries[source] = gen
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(source)
        return gen


POLICIES = PolicyCache()


def current_policy(settings: Settings, project_id: int) -> tuple[str, str]:
    """(source, version) of the policy that answers for a project: its latest published PPO policy,
    else BASE_MODEL as "pi-base"."""
    path = ArtifactStore(settings.model_dir).current_path(project_id, "policy")
    if path is not None:
        return str(path), path.name
    return settings.base_model, BASE_POLICY


def policy_generator(settings: Settings, project_id: int, *, device: str | None = None) -> Generator:
    """The project's current policy from this process's cache (loaded on CPU on a miss), moved to
    DEVICE. Called in work-horses, where touching CUDA is safe."""
    source, version = current_policy(settings, project_id)
    return POLICIES.get(source, version).to(device or settings.device)


def preload_policy(settings: Settings, project_id: int) -> Generator:
    """Load the project's current policy on CPU into this process's cache; the RQ parent calls this
    before forking a work-horse for a generation job (never touching CUDA)."""
    source, version = current_policy(settings, project_id)
    return POLICIES.get(source, version, device="cpu")
