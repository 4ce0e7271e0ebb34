"""A worker killed mid-job does not stall its project: the run lock lapses, and the next worker
on the host retries (or fails) the abandoned job at once instead of RQ's minutes-long expiry."""

from __future__ import annotations

import signal
import time

import pytest
from redis.exceptions import LockError
from rq import Retry, Worker

from prefloop.queue import JobKind, JobQueue
from tests.services import Process, prefloop_env, wait_until
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


def test_killed_worker_job_is_retried_by_the_next_worker_and_its_lock_freed(settings, redis_conn, tmp_path):
    """kill -9 a worker mid-job: a new worker's start retries the job and frees the project's lock."""
    q = JobQueue(settings)
    job = q.queue("gpu").enqueue("tests.test_recovery.slow_job", job_id="train_reward-9-killed", kwargs={"project_id": 9},
                                 meta={"kind": "train_reward", "project_id": 9, "reason": "test"},
                                 retry=Retry(max=1, interval=[600]))
    env = prefloop_env(redis_url=settings.redis_url, model_dir=settings.model_dir, base_model=settings.base_model)
    worker = Process(["worker", "--name", "doomed"], env, tmp_path / "worker.log").start()
    wait_until(lambda: redis_conn.get("prefloop:running:train_reward:9") == b"train_reward-9-killed", 60,
               "the job holding its run lock")
    worker.kill(signal.SIGKILL)

    assert q.fetch(job.id).get_status().value == "started"  # RQ alone would wait for the heartbeat to expire
    assert recovery.recover_abandoned(q) == [job.id]
    recovered = q.fetch(job.id)
    assert recovered.get_status().value == "scheduled" and recovered.retries_left == 0
    assert "doomed died" in recovered.meta["last_error"]
    assert redis_conn.get("prefloop:running:train_reward:9") is None
    assert "doomed" not in [w.name for w in Worker.all(connection=redis_conn)]
    assert recovery.recover_abandoned(q) == []
