"""What the command line prints: `prefloop jobs` (an ended job reads "done", a closed pipe ends
quietly) and `prefloop versions` (rounded numbers, no empty metrics), against a real Redis and real
RQ jobs run by an in-process RQ worker."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

from cli.main import main
from prefloop.artifacts import ArtifactStore
from prefloop.queue import JobQueue
from tests.support.services import PREFLOOP, REPO, prefloop_env


def writing_job(**_):
    """Ends like a generation job: its last step was "writing answers" 20/20."""
    from worker.runtime import Progress

    progress = Progress("writing answers", total=20)
    progress.update(20, force=True)
    return {"status": "done", "policy_version": "pi-base"}


def reward_like_job(**_):
    """Ends like a reward job: stage "done" with the progress of its last step, 1 of 20."""
    from worker.runtime import Progress

    progress = Progress("training", total=20)
    progress.update(1, stage="done", force=True)
    return {"status": "published", "version": "rm-20261201-000000"}


def stage_change_job(**_):
    """Moves to a new stage well inside the one-second throttle; returns what its meta then holds."""
    from rq import get_current_job

    from worker.runtime import Progress

    progress = Progress("loading model", every=60)
    progress.update(3, stage="training")  # a new stage: written although only milliseconds passed
    progress.update(4)  # same stage inside the throttle: not written
    meta = get_current_job().get_meta(refresh=True)
    return {"status": "done", "stage": meta["stage"], "progress": meta["progress"]}


def skipped_job(**_):
    return {"status": "skipped", "reason": "fewer than MIN_NEW_ANNOTATIONS=10"}


def run_jobs(settings, project_id: int, *funcs) -> list[str]:
    """Each function as a real RQ job (ids as JobQueue names them), run by an in-process worker."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    q = JobQueue(settings)
    queue = q.queue("default")
    ids = []
    for func in funcs:
        job_id = f"generate-{project_id}-{uuid.uuid4().hex[:12]}"
        queue.enqueue(
            f"tests.cli.test_cli_output.{func.__name__}",
            job_id=job_id,
            kwargs={},
            meta={"kind": "generate", "project_id": project_id, "reason": "test"},
        )
        ids.append(job_id)
    SimpleWorker([queue], connection=q.connection, serializer=JSONSerializer).work(burst=True)
    return ids


def test_an_ended_job_reads_done_or_skipped_without_its_last_steps_progress(settings, monkeypatch, capsys):
    ids = run_jobs(settings, 41, writing_job, reward_like_job, skipped_job)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    assert main(["jobs", "--project", "41"]) == 0
    out = capsys.readouterr().out.splitlines()
    writing, reward, skipped = (next(line for line in out if job_id in line) for job_id in ids)
    assert " done " in writing and "20/20" not in writing and "writing answers" not in writing, writing
    assert " done " in reward and "1/20" not in reward and "rm-20261201-000000" in reward, reward
    assert " skipped " in skipped and "MIN_NEW_ANNOTATIONS" in skipped, skipped
    assert "->" not in writing + reward + skipped
    described = {j["id"]: j for j in JobQueue(settings).jobs(41)}
    assert [described[i]["stage"] for i in ids] == ["done", "done", "skipped"]  # /jobs and the status page too
    assert described[ids[0]]["progress"] == {"done": 20, "total": 20}  # the numbers are kept


def test_a_new_stage_is_shown_at_once_and_progress_within_a_stage_is_throttled(settings):
    """/jobs shows the step a job is on: a stage change is written at once (a short training run
    is seen as "training", not skipped from "loading model" to done); updates within a stage are not."""
    [job_id] = run_jobs(settings, 44, stage_change_job)
    [job] = [j for j in JobQueue(settings).jobs(44) if j["id"] == job_id]
    assert job["result"]["stage"] == "training" and job["result"]["progress"]["done"] == 3, job


def test_jobs_into_a_pipe_closed_early_ends_quietly(settings):
    """`prefloop jobs | head`: the reader is gone before the command writes; no traceback, exit 0."""
    run_jobs(settings, 42, writing_job)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run(
            PREFLOOP + ["jobs"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=REPO,
            timeout=60,
            env=prefloop_env(redis_url=settings.redis_url),
        )
    finally:
        os.close(write_end)
    assert r.returncode == 0, r.stderr.decode()
    assert b"Traceback" not in r.stderr and b"BrokenPipeError" not in r.stderr, r.stderr.decode()


def test_versions_prints_rounded_numbers_and_no_empty_metrics(settings, monkeypatch, capsys):
    store = ArtifactStore(settings.model_dir)
    for kind, metrics in (
        ("reward", {"eval/accuracy": 0.7333333333, "eval/margin_mean": 1.23456789, "pairs_used": 40}),
        ("policy", {"reward_mean": 0.123456789, "objective/kl": 0.0123456, "stopped_early": None}),
    ):
        with store.staging(43, kind) as staged:
            (staged / "config.json").write_text("{}")
            (staged / "metrics.json").write_text(json.dumps(metrics))
            store.publish(43, kind, staged)
    monkeypatch.setenv("MODEL_DIR", str(settings.model_dir))
    assert main(["versions", "--project", "43"]) == 0
    out = capsys.readouterr().out
    assert "accuracy=0.733" in out and "margin_mean=1.235" in out and "pairs_used=40" in out, out
    assert "reward_mean=0.123" in out and "kl=0.012" in out, out
    assert "0.7333333" not in out and "None" not in out and "stopped_early" not in out, out
