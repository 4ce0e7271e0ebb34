"""`prefloop worker`: an RQ worker on prefloop's queues.

torch and transformers are imported here, in the parent, before RQ forks a work-horse per job, so
each job starts without paying for the imports; CUDA is never initialised in the parent (nothing
here touches `torch.cuda`), so every work-horse can use the GPU. SIGTERM is RQ's warm shutdown:
the running job finishes first (compose gives the worker a long stop_grace_period); a second
signal or a kill leaves the job in RQ's started registry, and RQ marks it abandoned/failed and
retries it per its Retry policy, while the previously published versions keep serving. A worker
that starts on the same host does that at once (worker/recovery.py) instead of after RQ's heartbeat
expiry and maintenance.

Policies survive the fork: RQ's work-horse dies after each job, so a model cached inside it would
be read again for every job. `PrefloopWorker` loads a generation job's current policy in the
parent, on CPU, before forking; the horse inherits the weights (copy-on-write) and only moves them
to the GPU. The parent reloads only when the project's policy pointer moves to a new version.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

from rq import Worker

from prefloop.jobkinds import JOBS, JobKind
from prefloop.logs import setup_logging
from prefloop.queue import JobQueue
from prefloop.settings import Settings
from worker import runtime
from worker.recovery import recover_abandoned, release_dead_schedulers

if TYPE_CHECKING:
    from redis.client import Pipeline
    from rq.job import Job
    from rq.queue import Queue

logger = logging.getLogger(__name__)

MAINTENANCE_INTERVAL = 60
"""Seconds between RQ's maintenance runs (registry cleanup; RQ's default is 10 minutes)."""
DEQUEUE_TIMEOUT = 10
"""Seconds an idle worker blocks on Redis before its loop comes round (heartbeat, scheduler check)."""


class PrefloopWorker(Worker):
    """RQ's forking worker, plus: the policy a generation job needs is loaded in this (parent)
    process, on CPU, before the work-horse is forked, and kept for the next jobs."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        if job.func_name == JOBS[JobKind.GENERATE].func:
            self._preload_policy(job)
        super().execute_job(job, queue)  # returns nothing (RQ ignores its result)

    @property
    def dequeue_timeout(self) -> int:
        return DEQUEUE_TIMEOUT

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """Also revive RQ's scheduler process if it died (it exits when Redis goes away for a moment,
        and RQ restarts it only at maintenance): until then no retry or rate-limited run would move
        from the schedule to the queue. Not while shutting down: RQ stops the scheduler then."""
        super().heartbeat(timeout, pipeline)
        scheduler = getattr(self, "scheduler", None)
        process = getattr(scheduler, "_process", None)  # RQ's own maintenance checks the same attribute
        stopping = self._stop_requested or getattr(self, "_shutdown_requested_date", None) is not None
        # A process implies a scheduler: testing both only tells mypy so.
        if (
            pipeline is None
            and not stopping
            and scheduler is not None
            and process is not None
            and not process.is_alive()
        ):
            release_dead_schedulers(self.connection, [q.name for q in self.queues], socket.gethostname())
            if scheduler.acquire_locks(auto_start=True):
                logger.warning("the scheduler process had died (Redis unreachable?); restarted it")

    def _preload_policy(self, job: Job) -> None:
        from worker.policy import preload_policy

        try:
            preload_policy(runtime.settings(), int(job.kwargs["project_id"]))
        except Exception as exc:  # process boundary: the horse loads (and reports the failure) itself
            logger.warning("could not preload the policy for job %s: %s: %s", job.id, type(exc).__name__, exc)


def run_worker(
    settings: Settings,
    *,
    queues: list[str] | None = None,
    burst: bool = False,
    simple: bool = False,
    name: str | None = None,
) -> bool:
    import torch  # noqa: F401  (imported before forking; CUDA stays untouched in this process)
    import transformers  # noqa: F401
    from label_studio_sdk import LabelStudio  # noqa: F401  (every job talks to Label Studio: ~1 s per horse otherwise)
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    import worker.jobs  # noqa: F401  (job modules imported once, before forking)

    setup_logging(settings.log_level)
    runtime.init(settings)
    jq = JobQueue(settings)
    names = [f"{settings.queue_prefix}-{q}" for q in queues] if queues else jq.queue_names()
    worker_class = SimpleWorker if simple else PrefloopWorker
    rq_worker = worker_class(
        [jq.queue(n.removeprefix(f"{settings.queue_prefix}-")) for n in names],
        connection=jq.connection,
        serializer=JSONSerializer,
        name=name or f"prefloop-{socket.gethostname()}-{os.getpid()}",
        maintenance_interval=MAINTENANCE_INTERVAL,
    )
    recover_abandoned(jq)  # jobs of a worker on this host that died mid-run: retried or failed now
    logger.info("worker %s listening on %s", rq_worker.name, ", ".join(names))
    return rq_worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
