"""RQ job entry points, enqueued by dotted name (`worker.jobs.<verb>`) with JSON arguments.

Each job clears its coalescing mark when it starts (so new events queue exactly one more run),
holds the project's run lock for its kind, and lets exceptions reach RQ so failures are recorded.
A job that decides not to run returns {"status": "skipped", "reason": ...}. A failure no retry can
fix (prefloop.jobkinds.PERMANENT_ERRORS: 401, 404, a label config without a Pairwise tag, bad knobs)
fails the job once, whatever its kind's retry policy; Label Studio or Redis being down is retried.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from prefloop.jobkinds import PERMANENT_ERRORS, JobKind
from prefloop.queue import JobQueue
from worker import runtime
from worker.recovery import held, lock_token

logger = logging.getLogger(__name__)


def _run(
    kind: JobKind, project_id: int, body: Callable[[Any], dict[str, Any]], trainer: str | None = None
) -> dict[str, Any]:
    """Run `body(requested)`, where `requested` is what arrived while the job waited: "force",
    "change" (START_TRAINING) or None (falsy). `trainer`: a policy job's (its coalescing slot)."""
    from rq import get_current_job

    job = get_current_job()
    queue = JobQueue(runtime.settings(), connection=job.connection if job is not None else None)
    requested = queue.mark_started(kind, project_id, job.id, trainer) if job is not None else None
    # PPO (train-ppo) and the policy job share one lock: one policy run per project at a time.
    lock = JobKind.POLICY if kind in (JobKind.PPO, JobKind.POLICY) else kind
    with held(queue.running_lock(lock, project_id), token=lock_token(job.id) if job is not None else None):
        try:
            return body(requested)
        except Exception as exc:  # recorded for /jobs and /status while RQ waits to retry, then re-raised
            if job is not None:
                job.meta["last_error"] = f"{type(exc).__name__}: {exc}"[:500]
                job.save_meta()  # type: ignore[no-untyped-call]  # rq leaves Job.save_meta unannotated
                if isinstance(exc, PERMANENT_ERRORS):
                    job.retries_left = 0  # RQ reads this when it handles the failure: no retry
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

    return _run(
        JobKind.GENERATE,
        project_id,
        lambda forced: fill_answers(runtime.settings(), project_id, reason=reason, regenerate=regenerate),
    )


def train_reward_model(
    project_id: int,
    reason: str = "",
    force: bool = False,
    on_change: bool = False,
    config: dict[str, Any] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Train a reward model on the project's current annotations and publish it (worker/reward/job.py).
    `force` (`prefloop train-reward --force`, an authenticated /train) trains regardless; `on_change`
    (START_TRAINING, also when it arrived while this job waited) trains when at least one annotation
    changed since the newest version; otherwise MIN_NEW_ANNOTATIONS applies. `config` overrides
    RewardTrainConfig fields."""
    from worker.reward.job import run as train_reward_job

    def body(requested: str | None) -> dict[str, Any]:
        forced = force or requested == "force"
        return train_reward_job(
            runtime.settings(),
            project_id,
            reason=reason,
            forced=forced,
            on_change=not forced and (on_change or requested == "change"),
            config=config,
        )

    return _run(JobKind.TRAIN_REWARD, project_id, body)


def run_ppo(project_id: int, reason: str = "", **kw: Any) -> dict[str, Any]:
    """PPO against the project's current reward model; publishes a new policy version (worker/ppo/job.py)."""
    from worker.ppo.job import ppo_job

    logger.info("PPO for project %s: %s", project_id, reason)
    return _run(
        JobKind.PPO, project_id, lambda forced: ppo_job(runtime.settings(), project_id, forced=bool(forced), **kw)
    )


def push_predictions(project_id: int, reason: str = "", **_: Any) -> dict[str, Any]:
    """Score the project's tasks that hold no prediction of the serving version and write them into
    Label Studio (worker/predictions.py); /predict queues this for tasks nobody scored yet."""
    from worker.predictions import push_predictions as push
    from worker.runtime import Progress

    def body(_requested: Any) -> dict[str, Any]:
        progress = Progress("scoring tasks")

        def report(done: int, total: int, stage: str) -> None:
            progress.total = total
            progress.update(done, stage=stage, force=done in (0, total))

        return push(runtime.settings(), project_id, reason=reason, progress=report)

    return _run(JobKind.PREDICT, project_id, body)


def train_policy(project_id: int, reason: str = "", trainer: str | None = None, **kw: Any) -> dict[str, Any]:
    """Train the policy with `trainer` (ppo, dpo, grpo, rloo; default POLICY_TRAINER) and publish a new
    policy version (worker/trainers: the job of each trainer, one contract). `config` overrides the
    trainer's knobs, `force` skips the reward-accuracy / new-annotation checks."""
    from worker.trainers import check_trainer, job_function

    settings = runtime.settings()
    name = check_trainer(trainer or settings.policy_trainer)
    job = job_function(name)
    extra = {"trainer": name} if name in ("grpo", "rloo") else {}
    logger.info("%s for project %s: %s", name.upper(), project_id, reason)

    def body(requested: str | None) -> dict[str, Any]:
        on_change = bool(kw.pop("on_change", False)) or requested == "change"
        return job(settings, project_id, forced=requested == "force", on_change=on_change, reason=reason, **extra, **kw)

    return _run(JobKind.POLICY, project_id, body, trainer=name)
