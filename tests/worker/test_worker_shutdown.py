"""A real `prefloop worker` as compose runs it: SIGTERM (what `docker compose stop` sends to the
container's main process) lets the running job finish and takes no new one; every log line a job
writes carries its job id; /metrics sees the live worker and the running job."""

from __future__ import annotations

import os
import signal

from rq import Worker
from rq.job import JobStatus

from prefloop.queue import JobQueue
from tests.support.prometheus import scrape, value
from tests.support.services import Process, prefloop_env, wait_until


def test_sigterm_finishes_the_running_job_then_exits(settings, client, tmp_path):
    """SIGTERM during a job: the job finishes, the next queued job stays queued, the worker exits 0."""
    jq = JobQueue(settings)
    queue = jq.queue("default")
    env = prefloop_env(redis_url=settings.redis_url, model_dir=settings.model_dir, log_level="INFO", device="cpu")
    worker = Process(["worker", "--queue", "default", "--name", "shutdown-test"], env, tmp_path / "worker.log").start()
    try:
        wait_until(
            lambda: any(w.name == "shutdown-test" for w in Worker.all(connection=jq.connection)), 90, "prefloop worker"
        )
        logged = queue.enqueue("logging.warning", args=["a line written inside a job"])
        wait_until(lambda: logged.get_status(refresh=True) == JobStatus.FINISHED, 30, "the logging job")

        running = queue.enqueue("time.sleep", args=[2.0], meta={"kind": "ping", "project_id": 9})
        waiting = queue.enqueue("time.sleep", args=[0.0])
        wait_until(lambda: running.get_status(refresh=True) == JobStatus.STARTED, 30, "the slow job to start")
        s = scrape(client)
        assert value(s, "prefloop_workers") == 1
        assert value(s, "prefloop_job_running_seconds", queue="default", kind="ping", project="9") >= 0

        os.kill(worker.proc.pid, signal.SIGTERM)  # the main process only, as Docker does
        assert worker.proc.wait(60) == 0
        assert running.get_status(refresh=True) == JobStatus.FINISHED
        assert waiting.get_status(refresh=True) == JobStatus.QUEUED
    finally:
        worker.stop()
    log = worker.output()
    assert "warm shut down requested" in log
    [line] = [ln for ln in log.splitlines() if ln.endswith("] a line written inside a job")]  # the job's own line
    assert f"WARNING root [{logged.id}]" in line, line
