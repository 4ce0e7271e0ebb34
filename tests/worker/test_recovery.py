"""A worker killed mid-job does not stall its project: the run lock lapses, and the next worker
on the host retries (or fails) the abandoned job at once instead of RQ's minutes-long expiry."""

from __future__ import annotations

import os
import signal
import time

import pytest
from redis.exceptions import LockError
from rq import Retry, Worker

from prefloop.jobkinds import JobKind
from prefloop.queue import JobQueue
from tests.support.services import Process, prefloop_env, wait_until
from worker import recovery


def slow_job(project_id: int, **_):
    """Holds the project's training run lock for a minute, like a long training run."""
    from worker.jobs import _run

    return _run(JobKind.TRAIN_REWARD, project_id, lambda forced: time.sleep(60))


def test_run_lock_is_refreshed_while_held_and_released_after(settings, redis_conn, monkeypatch):
    """The lock outlives its short TTL while the run goes on, carries the job id, and is freed after."""
    monkeypatch.setattr(recovery, "RUN_LOCK_TTL", 0.6)
    lock = redis_conn.lock("prefloop:running:train_reward:1", timeout=1, blocking_timeout=0.1, thread_local=False)
    with recovery.held(lock, token="train_reward-1-abc"):
        time.sleep(1.5)
        assert redis_conn.get("prefloop:running:train_reward:1") == b"train_reward-1-abc"
        other = redis_conn.lock("prefloop:running:train_reward:1", timeout=1, blocking_timeout=0.1, thread_local=False)
        with pytest.raises(LockError):
            with recovery.held(other, token="train_reward-1-def"):
                pass
    assert redis_conn.get("prefloop:running:train_reward:1") is None


def start_doomed_worker(settings, redis_conn, tmp_path, project_id: int) -> tuple[Process, str]:
    """A real worker running slow_job for `project_id`, once the job holds its run lock."""
    q = JobQueue(settings)
    job_id = f"train_reward-{project_id}-doomed"
    q.queue("gpu").enqueue(
        "tests.worker.test_recovery.slow_job",
        job_id=job_id,
        kwargs={"project_id": project_id},
        meta={"kind": "train_reward", "project_id": project_id, "reason": "test"},
        retry=Retry(max=1, interval=[600]),
    )
    env = prefloop_env(redis_url=settings.redis_url, model_dir=settings.model_dir, base_model=settings.base_model)
    worker = Process(["worker", "--name", f"doomed-{project_id}"], env, tmp_path / "worker.log").start()
    wait_until(
        lambda: (redis_conn.get(f"prefloop:running:train_reward:{project_id}") or b"").startswith(job_id.encode()),
        60,
        "the job holding its run lock",
    )
    return worker, job_id


def test_killed_worker_job_is_retried_by_the_next_worker_and_its_lock_freed(settings, redis_conn, tmp_path):
    """kill -9 a worker and its work-horse mid-job: a new worker's start retries the job and frees
    the project's lock, instead of RQ noticing minutes later."""
    worker, job_id = start_doomed_worker(settings, redis_conn, tmp_path, 9)
    worker.kill_tree()
    q = JobQueue(settings)
    assert q.fetch(job_id).get_status().value == "started"  # RQ alone would wait for the heartbeat to expire
    assert recovery.recover_abandoned(q) == [job_id]
    recovered = q.fetch(job_id)
    assert recovered.get_status().value == "scheduled" and recovered.retries_left == 0
    assert "doomed-9 died" in recovered.meta["last_error"]
    assert redis_conn.get("prefloop:running:train_reward:9") is None
    assert "doomed-9" not in [w.name for w in Worker.all(connection=redis_conn)]
    assert recovery.recover_abandoned(q) == []


def test_a_restarted_container_reusing_the_dead_pids_still_recovers_the_job(settings, redis_conn, tmp_path):
    """A restarted container numbers its processes from 1 again: the dead worker's and work-horse's
    pids now belong to live processes that started later. Recovery still sees both as dead and
    retries the job at once instead of waiting for RQ's heartbeat expiry."""
    import subprocess

    worker, job_id = start_doomed_worker(settings, redis_conn, tmp_path, 10)
    worker.kill_tree()
    time.sleep(BIRTH_GAP_S := 4)  # the new container starts after the old worker's birth (slack 2 s, btime ±1 s)
    newcomer = subprocess.Popen(["sleep", "120"])  # stands for the new worker holding the reused pid
    try:
        lock_key = "prefloop:running:train_reward:10"
        holder, host, _pid, ticks = redis_conn.get(lock_key).decode().replace("@", ":").split(":")
        redis_conn.set(lock_key, f"{holder}@{host}:{newcomer.pid}:{ticks}", keepttl=True)  # the horse's pid, reused
        redis_conn.hset(f"{Worker.redis_worker_namespace_prefix}doomed-10", "pid", newcomer.pid)
        assert recovery.pid_alive(newcomer.pid), "the reused pid runs"
        q = JobQueue(settings)
        assert recovery.recover_abandoned(q) == [job_id], f"waited {BIRTH_GAP_S}s"
        assert q.fetch(job_id).get_status().value == "scheduled"
    finally:
        newcomer.kill()
        newcomer.wait()


def test_a_reused_pid_does_not_pass_for_the_lock_holder(tmp_path):
    """The run lock's token records the holder's start time: another process with the same pid is
    not the holder."""
    token = recovery.lock_token("train_reward-1-x")
    pid, ticks = (int(p) for p in token.rsplit(":", 2)[1:])
    assert pid == os.getpid() and recovery.pid_alive(pid, ticks)
    assert not recovery.pid_alive(pid, ticks + 1)


def test_an_orphaned_work_horse_keeps_its_job_and_lock(settings, redis_conn, tmp_path):
    """If only the worker process dies, its work-horse (own process group) finishes the job: it is
    neither retried underneath it nor robbed of its lock."""
    from tests.support.services import descendants

    worker, job_id = start_doomed_worker(settings, redis_conn, tmp_path, 8)
    horses = descendants(worker.proc.pid)
    worker.kill(signal.SIGKILL)  # the worker's process group: the horse has its own
    try:
        q = JobQueue(settings)
        assert recovery.recover_abandoned(q) == []
        assert q.fetch(job_id).get_status().value == "started"
        assert (redis_conn.get("prefloop:running:train_reward:8") or b"").startswith(job_id.encode())
    finally:
        for pid in horses:
            os.kill(pid, signal.SIGKILL)


def test_a_dead_scheduler_is_revived_so_scheduled_retries_still_run(settings, redis_conn, tmp_path):
    """RQ's scheduler process dies when Redis goes away; the worker revives it at its next
    heartbeat, so retries and rate-limited runs keep moving (RQ alone waits for maintenance)."""
    from datetime import timedelta

    from tests.support.services import descendants

    env = prefloop_env(redis_url=settings.redis_url, model_dir=settings.model_dir, base_model=settings.base_model)
    worker = Process(["worker", "--name", "revives"], env, tmp_path / "worker.log").start()
    try:
        wait_until(
            lambda: redis_conn.get("rq:scheduler-lock:prefloop-gpu") and descendants(worker.proc.pid),
            60,
            "the worker's scheduler",
        )
        for pid in descendants(worker.proc.pid):  # idle: the scheduler is the worker's only child
            os.kill(pid, signal.SIGKILL)
        q = JobQueue(settings)
        job = q.queue("default").enqueue_in(timedelta(seconds=1), "worker.jobs.ping", kwargs={"reason": "later"})
        wait_until(lambda: q.fetch(job.id).get_status().value == "finished", 60, "the scheduled job to run")
        assert "restarted it" in worker.output()
    finally:
        worker.stop()
