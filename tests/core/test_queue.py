"""Jobs go through a real Redis to a real worker process."""

from __future__ import annotations

import json
import zlib

from rq.job import Job
from rq.serializers import JSONSerializer

from prefloop.jobkinds import JobKind, describe_job
from prefloop.queue import JobQueue
from tests.support.services import Process, prefloop_env


def test_job_is_stored_as_json_with_timeouts_and_ttls(settings, redis_conn):
    """Jobs are enqueued by dotted name, JSON-serialised, with explicit timeout, TTL and failure TTL."""
    q = JobQueue(settings)
    enq = q.enqueue(JobKind.TRAIN_REWARD, 3, reason="test")
    job = Job.fetch(enq.job_id, connection=redis_conn, serializer=JSONSerializer)
    assert job.func_name == "worker.jobs.train_reward_model"
    assert job.kwargs == {"project_id": 3, "reason": "test"}
    assert job.timeout == 4 * 3600 and job.ttl == 24 * 3600 and job.failure_ttl == 7 * 24 * 3600
    raw = zlib.decompress(redis_conn.hget(f"rq:job:{enq.job_id}", "data"))  # RQ compresses payloads
    assert json.loads(raw)[0] == "worker.jobs.train_reward_model", "job payload must be JSON, not pickle"


def test_coalescing_is_per_project_and_kind(settings):
    q = JobQueue(settings)
    a = q.enqueue(JobKind.TRAIN_REWARD, 1, reason="x")
    assert q.enqueue(JobKind.TRAIN_REWARD, 1, reason="y").job_id == a.job_id
    assert q.enqueue(JobKind.TRAIN_REWARD, 2, reason="x").job_id != a.job_id
    assert q.enqueue(JobKind.GENERATE, 1, reason="x").job_id != a.job_id


def test_a_waiting_policy_job_absorbs_requests_for_its_own_trainer_only(settings):
    """A GRPO run waiting for the project does not swallow a DPO request (the DPO run would never
    happen); requests for the same trainer still coalesce, None meaning POLICY_TRAINER, and a
    started run lets exactly one more of its trainer queue."""
    from dataclasses import replace

    q = JobQueue(replace(settings, policy_trainer="dpo"))
    grpo = q.enqueue(JobKind.POLICY, 5, reason="a", trainer="grpo")
    dpo = q.enqueue(JobKind.POLICY, 5, reason="b", trainer="dpo")
    assert dpo.job_id != grpo.job_id and not dpo.coalesced
    assert q.enqueue(JobKind.POLICY, 5, reason="c", trainer="grpo").job_id == grpo.job_id
    assert q.enqueue(JobKind.POLICY, 5, reason="d").job_id == dpo.job_id  # None: POLICY_TRAINER (dpo)
    assert q.fetch(dpo.job_id).meta["trainer"] == "dpo" and q.fetch(grpo.job_id).meta["trainer"] == "grpo"
    q.enqueue(JobKind.POLICY, 5, reason="forced", trainer="grpo", force=True)
    assert q.mark_started(JobKind.POLICY, 5, dpo.job_id, "dpo") is None  # the force went to GRPO's run
    assert q.enqueue(JobKind.POLICY, 5, reason="e", trainer="dpo").job_id not in (dpo.job_id, grpo.job_id)
    assert q.mark_started(JobKind.POLICY, 5, grpo.job_id, "grpo") == "force"


def test_started_job_lets_one_more_queue(settings):
    """Once a run starts, new events queue exactly one more run (it will see the new data)."""
    q = JobQueue(settings)
    first = q.enqueue(JobKind.TRAIN_REWARD, 1, reason="x")
    q.mark_started(JobKind.TRAIN_REWARD, 1, first.job_id)
    second = q.enqueue(JobKind.TRAIN_REWARD, 1, reason="y")
    third = q.enqueue(JobKind.TRAIN_REWARD, 1, reason="z")
    assert second.job_id != first.job_id and third.job_id == second.job_id


def test_rate_limit_schedules_the_next_run(settings):
    """With JOB_MIN_INTERVAL, a run right after another is scheduled for later, not dropped."""
    from dataclasses import replace

    q = JobQueue(replace(settings, job_min_interval=60))
    first = q.enqueue(JobKind.TRAIN_REWARD, 1, reason="x")
    q.mark_started(JobKind.TRAIN_REWARD, 1, first.job_id)
    later = q.enqueue(JobKind.TRAIN_REWARD, 1, reason="y")
    assert 50 < later.delay <= 60
    assert q.fetch(later.job_id).get_status().value == "scheduled"
    assert q.enqueue(JobKind.TRAIN_REWARD, 1, reason="z").coalesced


def test_real_worker_process_runs_a_queued_job(settings, tmp_path):
    """`prefloop worker --burst` in its own process picks a job from Redis and records its result."""
    q = JobQueue(settings)
    enq = q.enqueue(JobKind.PING, 0, reason="hello")
    snapshot = q.fetch(enq.job_id)  # read before the worker runs it
    env = prefloop_env(redis_url=settings.redis_url, model_dir=settings.model_dir, base_model=settings.base_model)
    worker = Process(["worker", "--burst"], env, tmp_path / "worker.log").start()
    worker.proc.wait(120)
    assert worker.proc.returncode == 0, worker.output()
    job = q.fetch(enq.job_id)
    assert job.get_status().value == "finished", worker.output()
    result = job.return_value()
    assert result["pong"] is True and result["reason"] == "hello"
    assert enq.job_id in worker.output(), "worker log lines carry the job id"
    # A description is one moment: the snapshot taken while the job waited still reads "queued" with
    # no result (it used to ask Redis again per field, so a job finishing between two reads showed
    # as "finished" with no result), and a fresh read shows the status with its result.
    then = describe_job(snapshot)
    assert (then["status"], then["result"], then["stage"]) == ("queued", None, None), then
    now = describe_job(q.fetch(enq.job_id))
    assert now["status"] == "finished" and now["stage"] == "done" and now["result"]["pong"] is True
    assert [j["result"] for j in q.jobs(0) if j["id"] == enq.job_id] == [now["result"]]


def test_stale_pending_mark_does_not_block_new_jobs(settings, redis_conn):
    """If a waiting job disappears (expired, deleted), the next event queues a fresh one."""
    q = JobQueue(settings)
    first = q.enqueue(JobKind.GENERATE, 4, reason="x")
    q.fetch(first.job_id).delete()
    second = q.enqueue(JobKind.GENERATE, 4, reason="y")
    assert not second.coalesced and second.job_id != first.job_id


def test_retry_backoff_follows_job_retry_intervals(settings):
    """Failed jobs retry with the kind's backoff, or with JOB_RETRY_INTERVALS when it is set."""
    from dataclasses import replace

    default = JobQueue(settings).fetch(JobQueue(settings).enqueue(JobKind.TRAIN_REWARD, 1, reason="x").job_id)
    assert default.retries_left == 3 and default.retry_intervals == [10, 30, 90]
    q = JobQueue(replace(settings, job_retry_intervals=(1, 2)))
    short = q.fetch(q.enqueue(JobKind.GENERATE, 1, reason="x").job_id)
    assert short.retries_left == 2 and short.retry_intervals == [1, 2]
    assert q.fetch(q.enqueue(JobKind.PING, 1, reason="x").job_id).retries_left is None
