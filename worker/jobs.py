"""RQ job entry points, enqueued by dotted name (`worker.jobs.<verb>`) with JSON arguments.

Each job clears its coalescing mark when it starts (so new events queue exactly one more run),
holds the project's run lock for its kind, and lets exceptions reach RQ so failures are recorded.
A job that decides not to run returns {"status": "skipped", "reason": ...}.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from prefloop.queue import JobKind, JobQueue
from worker import runtime
from worker.recovery import held, lock_token

logger = logging.getLogger(__name__)


def _run(kind: JobKind, project_id: int, body: Callable[[bool], dict[str, Any]]) -> dict[str, Any]:
    from rq import get_current_job

    job = get_current_job()
    queue = JobQueue(runtime.settings(), connection=job.connection if job is not None else None)
    forced = queue.mark_started(kind, project_id, job.id) if job is not None else False
    with held(queue.running_lock(kind, project_id), token=lock_token(job.id) if job is not None else None):
        try:
            return body(forced)
        except Exception as exc:  # recorded for /jobs and /status while RQ waits to retry, then re-raised
            if job is not None:
                job.meta["last_error"] = f"{type(exc).__name__}: {exc}"[:500]
                job.save_meta()
            raise


def ping(project_id: int = 0, reason: str = "", **_: Any) -> dict[str, Any]:
    """Proves a worker process picks up jobs; reports what it runs on (without touching CUDA state
    beyond what a job may do in its own work-horse)."""
    import torch

    return {"pong": True, "pid": os.getpid(), "torch": torch.__version__, "reason": reason}


def generate_answers(project_id: int, reason: str = "", regenerate: bool = False, **_: Any) -> dict[str, Any]:
    """Fill the answer pairs of tasks that have none, one chunk per run (worker/prefill.py); with
    regenerate=True also refresh outdated answers of unannotated tasks after a new policy."""
    from worker.prefill import fill_answers

    return _run(JobKind.GENERATE, project_id,
                lambda forced: fill_answers(runtime.settings(), project_id, reason=reason, regenerate=regenerate))


def train_reward_model(project_id: int, reason: str = "", force: bool = False, config: dict | None = None,
                       **_: Any) -> dict[str, Any]:
    """Train a reward model on the project's current annotations and publish it (worker/reward/job.py);
    `force` (or a START_TRAINING that arrived while this job waited) skips the MIN_NEW_ANNOTATIONS check;
    `config` overrides RewardTrainConfig fields."""
    from worker.reward.job import run as train_reward_job

    return _run(JobKind.TRAIN_REWARD, project_id, lambda forced: train_reward_job(
        runtime.settings(), project_id, reason=reason, forced=force or forced, config=config))


def run_ppo(project_id: int, reason: str = "", **kw: Any) -> dict[str, Any]:
    """PPO against the project's current reward model; publishes a new policy version (worker/ppo/job.py)."""
    from worker.ppo.job import ppo_job

    logger.info("PPO for project %s: %s", project_id, reason)
    return _run(JobKind.PPO, project_id, lambda forced: ppo_job(runtime.settings(), project_id, forced=forced, **kw))
