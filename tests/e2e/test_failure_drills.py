"""Failure drills on a real deployment: the worker killed mid-training, Redis stopped while Label
Studio sends webhooks, Label Studio stopped while a job runs. Each drill checks that nothing is
half-published, the serving version keeps serving, errors are clear, and nothing is lost.

The drills get their own Redis, backend and worker (they kill and stop things), and run in this
order on one project."""

from __future__ import annotations

import json

import pytest

from prefloop.jobkinds import JobKind, describe_job
from prefloop.label_config import load_label_config
from prefloop.queue import JobQueue
from prefloop.settings import Settings
from tests.e2e.conftest import create_project, keep_logs, prompt_tasks, wait_filled
from tests.support.stack import Stack
from worker.reward import RewardTrainConfig

pytestmark = pytest.mark.e2e

MIN_PAIRS = RewardTrainConfig().min_pairs
PROMPTS = [
    f"Drill prompt {i}: tell me about {w}."
    for i, w in enumerate(
        [
            "rivers",
            "bread",
            "trains",
            "owls",
            "snow",
            "glass",
            "maps",
            "bees",
            "clocks",
            "kites",
            "tea",
            "stone",
            "rain",
            "salt",
        ]
    )
]
SLOW = {"max_new_tokens": 32, "generation_batch_size": 1, "ppo_min_accuracy": 1}
"""Generation slow enough (a few seconds per job) that a drill can stop Label Studio mid-job; PPO
only behind a perfect reward model, so it rarely takes the worker's time."""
LATE = [
    f"Late prompt {i}: what is a {w}?"
    for i, w in enumerate(
        [
            "comet",
            "harbour",
            "violin",
            "desert",
            "lantern",
            "glacier",
            "meadow",
            "canal",
            "pebble",
            "tower",
            "ferry",
            "cactus",
            "anchor",
            "beacon",
            "orchard",
            "quarry",
            "saddle",
            "tunnel",
            "valley",
            "wagon",
            "wharf",
            "yacht",
            "bridge",
            "candle",
            "dune",
            "forge",
            "grove",
            "island",
            "jetty",
            "kettle",
        ]
    )
]


@pytest.fixture(scope="module")
def drill_ls(label_studio, tmp_path_factory):
    """A Label Studio the drills may stop: the session's (restarted afterwards), or, when the session
    reuses an outside server (PREFLOOP_TEST_LS_PORT), a private one."""
    if label_studio.proc is not None:
        yield label_studio
        return
    from tests.support.labelstudio_server import LabelStudioServer

    own = LabelStudioServer(data_dir=tmp_path_factory.mktemp("ls-drills")).start()
    yield own
    own.stop()


@pytest.fixture(scope="module")
def drill_stack(drill_ls, tiny_model_dir, tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("drills"), drill_ls, tiny_model_dir, extra=SLOW).start()
    yield s
    s.stop()
    keep_logs(s, "drills")


@pytest.fixture(scope="module")
def project(drill_ls, drill_stack) -> int:
    """A connected project with answers and a first reward model, trained from API annotations."""
    project_id = create_project(drill_ls, drill_stack, "e2e drills")
    drill_ls.import_tasks(project_id, prompt_tasks(PROMPTS))
    tasks = wait_filled(drill_ls, drill_stack, project_id, len(PROMPTS))
    for i, task in enumerate(tasks[:MIN_PAIRS]):
        drill_ls.annotate(task["id"], "left" if i % 2 else "right")
    drill_stack.wait_version(project_id, "reward", None, 180)
    return project_id


def queue_of(stack: Stack) -> JobQueue:
    """The queue as the stack's processes see it (same Redis, same retry intervals)."""
    return JobQueue(Settings.from_env(stack.env()))


def job_state(q: JobQueue, job_id: str) -> dict:
    job = q.fetch(job_id)
    return describe_job(job) if job is not None else {}


def idle(stack: Stack, project_id: int) -> None:
    """Wait until no job of the project waits or runs (a drill must not cut into another's job)."""
    active = ("queued", "scheduled", "deferred", "started")
    stack.wait_for(lambda: not [j for j in stack.jobs(project_id) if j["status"] in active], 300, "an idle queue")


def predict_versions(stack: Stack, label_studio, project_id: int) -> set[str]:
    """The model_version of /predict's entries for the project's tasks, as Label Studio asks."""
    tasks = label_studio.tasks(project_id)[:4]
    r = stack.post(
        "/predict", {"tasks": tasks, "project": f"{project_id}.1", "label_config": load_label_config("pairwise")}
    )
    r.raise_for_status()
    results = r.json()["results"]
    assert all(e.get("result") for e in results), results
    return {e["model_version"] for e in results}


def test_worker_killed_mid_training_publishes_nothing_and_the_job_is_retried(project, drill_stack, drill_ls):
    """kill -9 the worker while a reward model trains: the previous version keeps serving, nothing
    is half-published, and the next worker retries the job, which then publishes a complete version."""
    s = drill_stack
    idle(s, project)
    before, listed = s.current(project)["reward"], [v["version"] for v in s.store.versions(project, "reward")]
    serving = s.model_version(project)
    q = queue_of(s)
    job_id = q.enqueue(
        JobKind.TRAIN_REWARD,
        project,
        reason="drill: a long training run",
        rate_limited=False,
        force=True,
        config={"num_train_epochs": 100, "early_stopping_patience": 0},  # long enough to catch mid-run
    ).job_id

    def training():
        job = job_state(q, job_id)
        return job.get("status") == "started" and job.get("stage") == "training" and (job["progress"] or {}).get("done")

    s.wait_for(training, 120, "the training run under way")
    s.kill_worker()

    assert s.current(project)["reward"] == before
    assert [v["version"] for v in s.store.versions(project, "reward")] == listed, "nothing half-published"
    assert list((s.model_dir / str(project) / "reward").glob(".tmp-*")), "the killed run's staging dir is left unlisted"
    assert s.model_version(project) == serving
    assert predict_versions(s, drill_ls, project) == {serving}, "the previous version keeps serving"

    s.start_worker()  # recovers the abandoned job at start: RQ retries it (JOB_RETRY_INTERVALS)
    s.wait_for(lambda: job_state(q, job_id).get("status") in ("finished", "failed"), 300, "the retried job to end")
    job = job_state(q, job_id)
    assert job["status"] == "finished", job
    new = s.current(project)["reward"]
    assert new != before and job["result"]["version"] == new
    assert {"config.json", "metrics.json", "version.json"} <= {
        p.name for p in (s.model_dir / str(project) / "reward" / new).iterdir()
    }
    assert "recovered 1 job(s) abandoned by dead workers" in (s.base / "worker.log").read_text()


def test_redis_down_while_label_studio_sends_webhooks_loses_no_annotation(project, drill_stack, drill_ls):
    """With Redis stopped, LS's webhooks get a clear 503 and the backend stays up; once Redis is back,
    the next annotation retrains from everything in Label Studio, including the annotations made
    while it was down."""
    s = drill_stack
    idle(s, project)
    before = s.current(project)["reward"]
    todo = [t for t in drill_ls.tasks(project) if not t["annotations"]]
    s.redis.stop()
    try:
        for task in todo[:3]:
            drill_ls.annotate(task["id"], "left")  # LS sends ANNOTATION_CREATED inside each save
        r = s.post("/webhook", {"action": "START_TRAINING", "project": {"id": project}})
        assert r.status_code == 503 and "Redis" in r.json()["message"] and "unreachable" in r.json()["message"]
        assert s.server.alive() and s.get("/health")["queue"] == "down"
        refused = (s.base / "serve.log").read_text().count('"POST /webhook HTTP/1.1" 503')
        assert refused >= 4, "Label Studio's webhooks reached the backend and got 503s"
    finally:
        s.redis.start()  # same port, same append-only file
    drill_ls.annotate(todo[3]["id"], "right")
    new = s.wait_version(project, "reward", before, 180)
    metrics = json.loads((s.store.version_dir(project, "reward", new) / "metrics.json").read_text())
    annotated = sum(len(t["annotations"]) for t in drill_ls.tasks(project))
    assert metrics["pairs_used"] == annotated, f"trained on {metrics['pairs_used']} of {annotated} annotations"


def test_label_studio_down_while_a_job_runs_retries_with_backoff_then_fails_clearly(project, drill_stack, drill_ls):
    """Stop Label Studio while a generation job runs: the job retries with backoff, then fails with a
    message naming Label Studio; the serving version stays; once LS is back, the tasks get filled."""
    s = drill_stack
    idle(s, project)
    serving = s.model_version(project)
    q = queue_of(s)
    drill_ls.import_tasks(project, prompt_tasks(LATE))
    job = s.wait_job(project, "generate", lambda j: j["status"] == "started", 60, "a generation job under way")
    drill_ls.stop()
    try:
        s.wait_for(lambda: job_state(q, job["id"]).get("status") == "failed", 180, "the job to give up")
        failed = job_state(q, job["id"])
        assert failed["retries_left"] == 0
        assert "LabelStudioUnavailable" in failed["error"] and drill_ls.url in failed["error"], failed["error"]
        assert (s.base / "worker.log").read_text().count(f"Job {job['id']}: scheduled for retry") == 2
        assert s.model_version(project) == serving
    finally:
        drill_ls.start()
    r = s.post("/webhook", {"action": "TASKS_CREATED", "project": {"id": project}, "tasks": []})
    assert r.status_code == 200
    wait_filled(drill_ls, s, project, len(PROMPTS) + len(LATE))
