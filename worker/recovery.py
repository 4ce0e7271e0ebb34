"""Surviving a worker that dies mid-job (kill -9, the OOM killer, a pulled plug).

Two things would otherwise stall a project for a long time:
- The project's run lock. A job holds it for its whole run; `held()` takes it with the job id as
  its token and refreshes its short TTL (RUN_LOCK_TTL) from a thread, so a dead run's lock lapses
  within a minute instead of after the job timeout (hours).
- The job itself. RQ notices an abandoned job only once its heartbeat has expired (about 90 s) and
  a worker runs maintenance (every 10 minutes). A starting `prefloop worker` does not wait:
  `recover_abandoned()` finds jobs whose worker on this host is gone, frees their run locks and
  hands them to RQ's own abandoned-job handling (retried while retries are left, else failed with
  AbandonedJobError). Workers on other hosts are left to RQ's heartbeat expiry.

Artifacts need nothing: a killed run leaves only a `.tmp-*` staging directory (never listed, swept
later) and the previous version keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from typing import Iterator

import redis
from redis.exceptions import LockError
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from prefloop.queue import RUN_LOCK_TTL, JobQueue

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def held(lock, token: str | None) -> Iterator[None]:
    """Acquire `lock` (blocking up to its blocking_timeout) with `token` (the job id) and keep it
    fresh until the block ends."""
    if not lock.acquire(token=token):
        raise LockError(f"{lock.name!r} is still held by another run after waiting {lock.blocking_timeout}s")
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(RUN_LOCK_TTL / 3):
            try:
                lock.reacquire()
            except (LockError, redis.RedisError) as exc:
                logger.warning("could not refresh run lock %s: %s", lock.name, exc)

    thread = threading.Thread(target=refresh, name="run-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        try:
            lock.release()
        except (LockError, redis.RedisError) as exc:  # it lapsed (Redis was away): nothing left to free
            logger.warning("run lock %s was not released: %s", lock.name, exc)


def recover_abandoned(jq: JobQueue) -> list[str]:
    """Retry or fail the jobs of dead workers on this host now; returns their ids."""
    conn, host = jq.connection, socket.gethostname()
    recovered: list[str] = []
    for name in jq.queue_names():
        registry = jq.queue(name.removeprefix(f"{jq.prefix}-")).started_job_registry
        dead = []
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            worker_name = conn.hget(f"rq:execution:{job_id}:{execution_id}", "worker_name")
            if worker_name and not worker_alive(conn, worker_name.decode(), host):
                dead.append((job_id, execution_id, worker_name.decode()))
        for job_id, execution_id, worker_name in dead:
            _mark_abandoned(jq, job_id, worker_name)
            conn.zadd(registry.key, {f"{job_id}:{execution_id}": 0}, xx=True)  # expired now
        if dead:
            registry.cleanup()  # RQ's handling: retry per the job's Retry policy, else FailedJobRegistry
            recovered += [job_id for job_id, _, _ in dead]
    for worker in Worker.all(connection=conn):
        if worker.hostname == host and not worker_alive(conn, worker.name, host):
            worker.register_death()  # frees its name and drops it from the list of live workers
    if recovered:
        logger.warning("recovered %d job(s) abandoned by dead workers: %s", len(recovered), ", ".join(recovered))
    return recovered


def worker_alive(conn: redis.Redis, name: str, host: str) -> bool:
    """False when the worker registered its death, expired, or ran on this host in a process that
    no longer exists; True otherwise (including workers on other hosts)."""
    data = conn.hgetall(f"{Worker.redis_worker_namespace_prefix}{name}")
    if not data or b"death" in data:
        return False
    if (data.get(b"hostname") or b"").decode() != host:
        return True
    pid = int(data.get(b"pid") or 0)
    if pid == os.getpid():  # a previous worker had our pid (a restarted container): it is gone
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def _mark_abandoned(jq: JobQueue, job_id: str, worker_name: str) -> None:
    """Free the job's run lock (only if the job holds it) and say why it stopped."""
    try:
        job = Job.fetch(job_id, connection=jq.connection, serializer=JSONSerializer)
    except NoSuchJobError:  # expired: RQ's cleanup skips it too
        return
    meta = job.meta or {}
    if meta.get("kind") and meta.get("project_id") is not None:
        key = jq.key("running", meta["kind"], meta["project_id"])
        if (jq.connection.get(key) or b"").decode() == job_id:
            jq.connection.delete(key)
    job.meta["last_error"] = f"AbandonedJobError: worker {worker_name} died while running this job"
    job.save_meta()
