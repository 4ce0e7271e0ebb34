"""Surviving a worker that dies mid-job (kill -9, the OOM killer, a pulled plug).

Two things would otherwise stall a project for a long time:
- The project's run lock. A job holds it for its whole run; `held()` takes it with the job id as
  its token and refreshes its short TTL (RUN_LOCK_TTL) from a thread, so a dead run's lock lapses
  within a minute instead of after the job timeout (hours).
- The job itself. RQ notices an abandoned job only once its heartbeat has expired (about 90 s) and
  a worker runs maintenance (every 10 minutes). A starting `prefloop worker` does not wait:
  `recover_abandoned()` finds jobs whose worker on this host is gone, frees their run locks and
  hands them to RQ's own abandoned-job handling (retried while retries are left, else failed with
  AbandonedJobError). A job whose work-horse still runs (RQ puts it in its own process group, so
  killing only the worker orphans it) is left alone: the horse finishes and records it. Workers
  on other hosts are left to RQ's heartbeat expiry.

A process id alone does not say who runs: a restarted container starts its processes at the same
small numbers, so the new worker, or one of its threads, holds the old worker's or work-horse's
pid. The check therefore also compares when the process started (Linux /proc): with the run lock's
token, which records it, and with the worker's registered birth, which comes after its start.

Artifacts need nothing: a killed run leaves only a `.tmp-*` staging directory (never listed, swept
later) and the previous version keeps serving.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import redis
from redis.exceptions import LockError
from redis.lock import Lock
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from prefloop.queue import RUN_LOCK_TTL, JobQueue

logger = logging.getLogger(__name__)


def lock_token(job_id: str) -> str:
    """Who holds a run lock: the job and the process running it (an RQ work-horse: its pid and start
    time), so recovery can tell a dead holder from one still running after its worker died."""
    return f"{job_id}@{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or 0}"


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first, start time at index 19);
    None without /proc (not Linux) or once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (/proc/PID/stat field 22)."""
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 and fields[19].isdigit() else None


def started_at(pid: int) -> float | None:
    """When the process started, as a Unix time; None where /proc cannot tell."""
    ticks = _start_ticks(pid)
    try:
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return None if ticks is None else boot + ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def held(lock: Lock, token: str | None) -> Iterator[None]:
    """Acquire `lock` (blocking up to its blocking_timeout) with `token` (see lock_token) and keep
    it fresh until the block ends."""
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
        dead: list[tuple[str, str, str]] = []  # (job id, execution id, worker name)
        for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
            # The connection does not decode responses: Redis hands back bytes.
            raw_name = cast("bytes | None", conn.hget(f"rq:execution:{job_id}:{execution_id}", "worker_name"))
            if raw_name and not worker_alive(conn, raw_name.decode(), host):
                dead.append((job_id, execution_id, raw_name.decode()))
        dead = [d for d in dead if _release_dead_holder(jq, d[0], host)]
        for job_id, execution_id, worker_name in dead:
            _note(jq, job_id, f"AbandonedJobError: worker {worker_name} died while running this job")
            conn.zadd(registry.key, {f"{job_id}:{execution_id}": 0}, xx=True)  # expired now
        if dead:
            registry.cleanup()  # RQ's handling: retry per the job's Retry policy, else FailedJobRegistry
            recovered += [job_id for job_id, _, _ in dead]
    for worker in Worker.all(connection=conn):
        if worker.hostname == host and not worker_alive(conn, worker.name, host):
            # Frees its name and drops it from the list of live workers.
            worker.register_death()  # type: ignore[no-untyped-call]  # rq leaves Worker.register_death unannotated
    release_dead_schedulers(conn, jq.queue_names(), host)
    if recovered:
        logger.warning("recovered %d job(s) abandoned by dead workers: %s", len(recovered), ", ".join(recovered))
    return recovered


def worker_alive(conn: redis.Redis, name: str, host: str) -> bool:
    """False when the worker registered its death, expired, or ran on this host in a process that
    no longer exists; True otherwise (including workers on other hosts)."""
    data = cast("dict[bytes, bytes]", conn.hgetall(f"{Worker.redis_worker_namespace_prefix}{name}"))  # not decoded
    if not data or b"death" in data:
        return False
    if (data.get(b"hostname") or b"").decode() != host:
        return True
    return _registered_process_alive(int(data.get(b"pid") or 0), data.get(b"birth"))


BIRTH_SLACK_S = 2.0  # /proc/stat's boot time is whole seconds


def _registered_process_alive(pid: int, born: bytes | None) -> bool:
    """Whether the process that registered itself (an RQ worker or scheduler) at `born` (RQ's UTC
    timestamp) as `pid` on this host still runs: not our own pid (a restarted container's previous
    worker), running, and not a process that started after that registration (a reused pid)."""
    if pid == os.getpid() or not pid_alive(pid):
        return False
    from rq.utils import utcparse

    try:
        registered = utcparse(born.decode()).replace(tzinfo=datetime.timezone.utc).timestamp() if born else None
    except ValueError:
        registered = None
    start = started_at(pid)
    return registered is None or start is None or start <= registered + BIRTH_SLACK_S


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether a process runs; a zombie (dead, not yet reaped by a PID 1 that never reaps) does not,
    nor one that started at another time than `start_ticks` (another process with the same pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)
    if fields is None:  # no /proc (not Linux), or it just ended
        return True
    if start_ticks and len(fields) > 19 and fields[19] != str(start_ticks):
        return False
    return fields[0] not in ("Z", "X")


def _release_dead_holder(jq: JobQueue, job_id: str, host: str) -> bool:
    """Free the project's run lock if this job's dead process holds it. False when its work-horse
    is still running on this host (an orphan of its killed worker): it finishes the job itself."""
    try:
        job = Job.fetch(job_id, connection=jq.connection, serializer=JSONSerializer)
    except NoSuchJobError:  # expired: RQ's cleanup skips it too
        return True
    meta = job.meta or {}
    if not meta.get("kind") or meta.get("project_id") is None:
        return True
    key = jq.key("running", meta["kind"], meta["project_id"])
    holder, _, where = (cast("bytes | None", jq.connection.get(key)) or b"").decode().partition("@")
    if holder != job_id:
        return True
    holder_host, pid, ticks = ([*where.split(":"), "", ""])[:3]  # host:pid:start ticks (older tokens: host:pid)
    if holder_host == host and pid.isdigit() and pid_alive(int(pid), int(ticks) if ticks.isdigit() else None):
        return False
    jq.connection.delete(key)
    return True


def release_dead_schedulers(conn: redis.Redis, queue_names: list[str], host: str) -> None:
    """A dead scheduler process keeps its queues' scheduler locks for a minute, and RQ tries to
    take them again only at maintenance: until then nothing moves scheduled jobs (retries,
    rate-limited runs) to the queue. Free the locks of dead schedulers on this host."""
    from rq.scheduler import RQScheduler

    for name in queue_names:
        key = RQScheduler.get_locking_key(name)
        owner = cast("bytes | None", conn.get(key))  # the connection does not decode responses
        data = cast("dict[bytes, bytes]", conn.hgetall(f"rq:scheduler:{owner.decode()}")) if owner else {}
        if (data.get(b"hostname") or b"").decode() != host:  # no owner, or a scheduler on another host
            continue
        if not _registered_process_alive(int(data.get(b"pid") or 0), data.get(b"created_at")):
            conn.delete(key)


def _note(jq: JobQueue, job_id: str, message: str) -> None:
    """Say why the job stopped (shown by /jobs and /status while it waits for its retry)."""
    try:
        job = Job.fetch(job_id, connection=jq.connection, serializer=JSONSerializer)
    except NoSuchJobError:
        return
    job.meta["last_error"] = message
    job.save_meta()  # type: ignore[no-untyped-call]  # rq leaves Job.save_meta unannotated
