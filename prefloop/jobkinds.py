"""The jobs prefloop runs: their kinds, the queue each goes to, its time limits and retries, the
failures no retry can fix, and how a job reads in /jobs, `prefloop jobs` and the status page.
prefloop/queue.py enqueues them; worker/jobs.py runs them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rq.job import Job, JobStatus

from prefloop.errors import (
    BadRequest,
    InputError,
    LabelConfigError,
    LabelStudioError,
    ModelNotFound,
    SettingsError,
    UnknownProject,
)

GPU_QUEUE = "gpu"
"""Generation, reward-model training and PPO: the work that wants the accelerator."""
DEFAULT_QUEUE = "default"
"""Light jobs (health pings, bookkeeping)."""


class JobKind(str, Enum):
    GENERATE = "generate"
    TRAIN_REWARD = "train_reward"
    PPO = "ppo"
    POLICY = "policy"  # any policy trainer (POLICY_TRAINER or the job's `trainer`): ppo, dpo, grpo, rloo
    PREDICT = "predict"  # score tasks with the serving reward model and write the predictions into Label Studio
    PING = "ping"


@dataclass(frozen=True)
class JobSpec:
    func: str  # dotted name the worker imports; the backend never does
    queue: str
    timeout: int  # seconds a run may take before RQ kills it
    ttl: int  # seconds a job may wait in the queue
    result_ttl: int  # seconds a result is kept
    failure_ttl: int  # seconds a failed job is kept (RQ's default is a year)
    retries: tuple[int, ...] = ()  # backoff intervals for retries (Label Studio briefly down)


DAY = 24 * 3600
JOBS: dict[JobKind, JobSpec] = {
    JobKind.GENERATE: JobSpec("worker.jobs.generate_answers", GPU_QUEUE, 3600, DAY, DAY, 7 * DAY, (10, 30, 90)),
    JobKind.TRAIN_REWARD: JobSpec(
        "worker.jobs.train_reward_model", GPU_QUEUE, 4 * 3600, DAY, 7 * DAY, 7 * DAY, (10, 30, 90)
    ),
    JobKind.PPO: JobSpec("worker.jobs.run_ppo", GPU_QUEUE, 8 * 3600, DAY, 7 * DAY, 7 * DAY, (30, 120)),
    JobKind.POLICY: JobSpec("worker.jobs.train_policy", GPU_QUEUE, 8 * 3600, DAY, 7 * DAY, 7 * DAY, (30, 120)),
    JobKind.PREDICT: JobSpec("worker.jobs.push_predictions", GPU_QUEUE, 3600, DAY, DAY, 7 * DAY, (10, 30, 90)),
    JobKind.PING: JobSpec("worker.jobs.ping", DEFAULT_QUEUE, 30, 600, 600, DAY),
}

PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    LabelConfigError,
    UnknownProject,
    LabelStudioError,
    InputError,
    BadRequest,
    ModelNotFound,
    SettingsError,
)
"""Failures a retry cannot fix: a label config without a Pairwise tag, a project Label Studio does not
have (404), a refused key (401/403), bad knobs or input. Jobs fail once with the message
(worker/jobs.py); Label Studio down (LabelStudioUnavailable) and Redis down stay retried."""
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""What a job id can look like (prefloop's `<kind>-<project>-<hex>`, RQ's uuids); anything else is a 404."""


def _stage(status: JobStatus | None, stage: str | None, result: Any) -> str | None:
    """A job that ended reads "done", "skipped" or "failed", not the last step it reported
    ("writing answers", or "done" with a progress of 1/20); `progress` keeps that step's numbers."""
    if status == JobStatus.FINISHED:
        outcome = result.get("status") if isinstance(result, dict) else None
        return outcome if outcome in ("skipped", "failed") else "done"
    if status == JobStatus.FAILED:
        return "failed"
    return stage


def describe_job(job: Job) -> dict[str, Any]:
    """One job as JSON. The status is read once, from the hash `Job.fetch`/`fetch_many` loaded with the
    meta: asking Redis again for each field let a job that finished between two reads show as
    "finished" with no result. RQ writes the FINISHED status and the result in one transaction, so a
    snapshot that says finished has its result."""
    meta = job.meta or {}
    status = job.get_status(refresh=False)
    result = job.return_value() if status == JobStatus.FINISHED else None
    error = None
    if status == JobStatus.FAILED:
        latest = job.latest_result()
        if latest is not None and latest.exc_string:
            error = latest.exc_string.strip().splitlines()[-1]
    elif status != JobStatus.FINISHED:
        error = meta.get("last_error")  # waiting for a retry: RQ keeps no result of the failed attempt
    return {
        "id": job.id,
        "kind": meta.get("kind"),
        "trainer": meta.get("trainer"),  # which policy trainer a ppo/policy job runs (None for other kinds)
        "project_id": meta.get("project_id"),
        "status": str(status.value) if status else None,
        "reason": meta.get("reason"),
        "progress": meta.get("progress"),
        "stage": _stage(status, meta.get("stage"), result),
        "enqueued_at": job.enqueued_at.isoformat() if job.enqueued_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        "result": result,
        "error": error,
        "retries_left": job.retries_left,
    }
