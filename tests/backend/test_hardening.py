"""Issue 15's reproductions: forged events, oversized input and odd identifiers never cost GPU time,
disk or a 500. Each test failed on the code before the fix."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from prefloop.label_config import load_label_config
from prefloop.queue import JobQueue

WEBHOOKS = json.loads((Path(__file__).parents[1] / "fixtures" / "webhooks.json").read_text())
CONFIG = load_label_config("pairwise")
GPU_QUEUE = "rq:queue:prefloop-gpu"


def app_with(settings, **changes):
    from backend.app import create_app

    return create_app(replace(settings, **changes), test_config={"TESTING": True})


def serve(client, project="7.1764224400"):
    r = client.post("/setup", json={"project": project, "schema": CONFIG})
    assert r.status_code == 200, r.json
    return r


def queued_jobs(redis_conn) -> int:
    return redis_conn.llen(GPU_QUEUE) + redis_conn.zcard("rq:scheduled:prefloop-gpu")


# --- forged training ------------------------------------------------------------------------------
def test_start_training_with_nothing_changed_queues_nothing(settings, client, redis_conn):
    """Three unauthenticated START_TRAINING posts after a clean reward-model run queue no job: each is
    a 200 that says nothing changed. An annotation event makes the next one queue a run again."""
    serve(client)
    queue = JobQueue(settings)
    queue.mark_trained(7, queue.change_count(7))  # what a reward run does when it leaves nothing unchanged
    for _ in range(3):
        r = client.post("/webhook", json=WEBHOOKS["START_TRAINING"])
        assert r.status_code == 200 and r.json["status"] == "unchanged", r.json
        assert "nothing to train" in r.json["reason"] and "--force" in r.json["reason"]
    assert queued_jobs(redis_conn) == 0
    assert client.post("/webhook", json=WEBHOOKS["ANNOTATION_UPDATED"]).json["status"] == "queued"
    r = client.post("/webhook", json=WEBHOOKS["START_TRAINING"])
    assert r.json["status"] == "queued" and r.json["coalesced"], r.json
    assert redis_conn.get("prefloop:force:train_reward:7") == b"change", "START_TRAINING never forces"


def test_start_training_queues_a_run_that_trains_only_on_a_change(client, redis_conn):
    """Without a clean run on record, START_TRAINING queues a run marked on_change, never force."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    serve(client)
    r = client.post("/webhook", json=WEBHOOKS["START_TRAINING"])
    job = Job.fetch(r.json["job_id"], connection=redis_conn, serializer=JSONSerializer)
    assert job.kwargs.get("on_change") is True and "force" not in job.kwargs


def test_train_forces_only_when_authenticated(settings, redis_conn):
    """/train (legacy) is open when basic auth is off: then it is the Train button; behind basic auth it forces."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    open_client = app_with(settings).test_client()
    serve(open_client)
    job_id = open_client.post("/train", json={"project": "7.1"}).json["job_id"]
    assert "force" not in Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer).kwargs
    redis_conn.flushdb()
    authed = app_with(settings, basic_auth_user="ls", basic_auth_pass="pw").test_client()
    headers = {"Authorization": "Basic " + base64.b64encode(b"ls:pw").decode()}
    assert authed.post("/setup", json={"project": "7.1", "schema": CONFIG}, headers=headers).status_code == 200
    job_id = authed.post("/train", json={"project": "7.1"}, headers=headers).json["job_id"]
    assert Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer).kwargs["force"] is True


# --- webhook secret -------------------------------------------------------------------------------
def test_webhook_secret_is_required_once_set(settings, redis_conn):
    """With WEBHOOK_SECRET, events without the header are 401, with a wrong one 403 (nothing queued);
    the right header or valid basic auth passes. The Train button's START_TRAINING (sent by Label
    Studio without the webhook's headers) still answers, and never forces."""
    client = app_with(settings, webhook_secret="s3cret-value", basic_auth_user="ls", basic_auth_pass="pw").test_client()
    basic = {"Authorization": "Basic " + base64.b64encode(b"ls:pw").decode()}
    assert client.post("/setup", json={"project": "7.1", "schema": CONFIG}, headers=basic).status_code == 200
    event = WEBHOOKS["ANNOTATION_CREATED"]
    r = client.post("/webhook", json=event)
    assert r.status_code == 401 and "X-Prefloop-Webhook-Secret" in r.json["message"], r.json
    assert "WWW-Authenticate" not in r.headers
    r = client.post("/webhook", json=event, headers={"X-Prefloop-Webhook-Secret": "guess"})
    assert r.status_code == 403 and "WEBHOOK_SECRET" in r.json["message"]
    assert queued_jobs(redis_conn) == 0
    r = client.post("/webhook", json=event, headers={"X-Prefloop-Webhook-Secret": "s3cret-value"})
    assert r.status_code == 200 and r.json["status"] == "queued"
    assert client.post("/webhook", json=WEBHOOKS["ANNOTATION_UPDATED"], headers=basic).status_code == 200
    r = client.post("/webhook", json=WEBHOOKS["START_TRAINING"])
    assert r.status_code == 200 and r.json["status"] == "queued"
    assert redis_conn.get("prefloop:force:train_reward:7") == b"change"


# --- secrets in errors ----------------------------------------------------------------------------
def test_redis_password_never_reaches_a_response_or_the_log(settings, caplog):
    """REDIS_URL with a password, Redis down: the 503s of /webhook, /train, /jobs and the status page
    name Redis without the password, and so does the log."""
    from tests.support.services import free_port

    app = app_with(settings, redis_url=f"redis://:hunter2-pass@127.0.0.1:{free_port()}/0", projects=(7,))
    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        answers = [
            client.post("/webhook", json=WEBHOOKS["ANNOTATION_CREATED"]),
            client.post("/train", json={"project": 7}),
            client.get("/jobs"),
            client.get("/jobs/train_reward-7-ab"),
            client.get("/status"),
            client.post("/setup", json={"project": "7.1", "schema": CONFIG}),
        ]
    for r in answers[:4]:
        assert r.status_code == 503, (r.request.path, r.get_data(as_text=True))
        assert "Redis at redis://:***@127.0.0.1" in r.json["message"]
    assert "redis://:***@127.0.0.1" in answers[4].get_data(as_text=True)
    for r in answers:
        assert "hunter2" not in r.get_data(as_text=True)
    assert "hunter2" not in caplog.text


def test_log_lines_are_redacted_by_the_prefloop_handler(capsys):
    from prefloop.logs import setup_logging

    setup_logging("INFO")
    logging.getLogger("prefloop.test").warning("cannot reach %s", "redis://user:pa55word@h:6379/0")
    assert "pa55word" not in capsys.readouterr().err


# --- oversized input ------------------------------------------------------------------------------
def test_reward_refuses_oversized_texts_and_too_many_items_naming_the_cap(client):
    """A 10 MB prompt or response is a 413 naming MAX_TEXT_CHARS, answered before any model is loaded;
    more items than the cap is a 400 naming it."""
    big = "x" * 10_000_000
    for item in (
        {"prompt": big, "response": "a"},
        {"prompt": "p", "response": big},
        {"messages": [{"role": "user", "content": big}], "response": "a"},
    ):
        r = client.post("/reward", json={"project": 7, "items": [item]})
        assert r.status_code == 413 and "MAX_TEXT_CHARS=20000" in r.json["message"], r.json
    r = client.post("/reward", json={"project": 7, "items": [{"prompt": "p", "response": "r"}] * 1001})
    assert r.status_code == 400 and "at most 1000" in r.json["message"]


def test_reward_time_budget_covers_tokenization(settings, tiny_model_dir):
    """With the budget spent before the first batch, /reward answers 413 naming PREDICT_TIME_BUDGET instead of
    tokenizing everything first."""
    from prefloop.artifacts import ArtifactStore
    from tests.support.reward_helpers import publish_copy

    publish_copy(ArtifactStore(settings.model_dir), 7, tiny_model_dir)  # an untrained head scores as well
    client = app_with(settings, predict_time_budget=1e-6).test_client()
    r = client.post("/reward", json={"project": 7, "items": [{"prompt": "p " * 500, "response": "r"}] * 64})
    assert r.status_code == 413 and "PREDICT_TIME_BUDGET" in r.json["message"] and "of 64 items" in r.json["message"]


def test_predict_skips_oversized_texts_naming_the_cap(client, caplog):
    """A 10 MB prompt on /predict is never rendered, hashed or tokenized: that task gets no prediction,
    and the log says why."""
    with caplog.at_level(logging.WARNING):
        r = client.post(
            "/predict",
            json={
                "project": "7.1",
                "label_config": CONFIG,
                "tasks": [{"id": 1, "data": {"prompt": "x" * 10_000_000, "answer1": "a", "answer2": "b"}}],
            },
        )
    assert r.status_code == 200 and r.json["results"] == [[]]
    assert "MAX_TEXT_CHARS=20000" in caplog.text


def test_deeply_nested_json_is_a_400_everywhere(client):
    """The metrics hook parsed /predict bodies a second time: a deeply nested body gave a 500."""
    body = b'{"tasks": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for path in ("/predict", "/webhook", "/setup", "/reward", "/train"):
        r = client.post(path, data=body, content_type="application/json")
        assert r.status_code == 400 and "JSON" in r.json["message"], (path, r.status_code)


# --- identifiers ----------------------------------------------------------------------------------
ODD_IDS = ["²", "١٢", "1" * 300, "1" * 5000, " 7", "7 ", "+7", "-7", "0", "7e3", "0x7", "", "٧.1"]


@pytest.mark.parametrize("raw", ODD_IDS)
def test_odd_project_ids_are_a_400_on_every_route_and_never_stored(client, redis_conn, raw):
    serve(client)
    before = redis_conn.smembers("prefloop:projects")
    bodies = {
        "/setup": {"project": raw, "schema": CONFIG},
        "/predict": {"project": raw, "label_config": CONFIG, "tasks": [{"data": {"prompt": "p"}}]},
        "/webhook": {"action": "START_TRAINING", "project": {"id": raw}},
        "/train": {"project": raw},
        "/reward": {"project": raw, "items": [{"prompt": "p", "response": "r"}]},
    }
    for path, body in bodies.items():
        r = client.post(path, json=body)
        assert r.status_code == 400 and "project" in r.json["message"], (path, r.status_code, r.get_data()[:300])
    for path in ("/versions", "/jobs", "/status") if raw else ("/versions", "/jobs"):  # /status?project= is all
        r = client.get(path, query_string={"project": raw})
        assert r.status_code == 400, (path, r.status_code)
    assert redis_conn.smembers("prefloop:projects") == before
    assert client.get("/status").status_code == 200


def test_a_huge_integer_project_id_is_a_400(client):
    for literal in ("1" * 5000, "1" * 300, "-1"):
        body = ('{"project": ' + literal + ', "schema": ' + json.dumps(CONFIG) + "}").encode()
        r = client.post("/setup", data=body, content_type="application/json")
        assert r.status_code == 400, (literal[:10], r.status_code)


def test_a_bad_id_already_in_redis_does_not_break_the_status_page(client, redis_conn):
    """A 300-digit id registered by the old /setup made every /status a 500."""
    redis_conn.sadd("prefloop:projects", "1" * 300, "²")
    assert client.get("/status").status_code == 200


def test_over_long_version_names_are_404(client, settings):
    from prefloop.artifacts import ArtifactStore

    ArtifactStore(settings.model_dir).kind_dir(7, "reward").mkdir(parents=True)
    long = "rm-" + "9" * 300
    r = client.post("/reward", json={"project": 7, "version": long, "items": [{"prompt": "p", "response": "r"}]})
    assert r.status_code == 404 and "does not exist" in r.json["message"]
    assert client.get(f"/status/plot/7/reward/{long}/curve.png").status_code == 404


def test_setup_requires_a_label_config(client, redis_conn):
    """Auth off: /setup {"project": N} used to register any project with no label config."""
    for body in ({"project": "8.1"}, {"project": "8.1", "schema": ""}, {"project": "8.1", "schema": 5}):
        r = client.post("/setup", json=body)
        assert r.status_code == 400 and "label config" in r.json["message"]
    assert not redis_conn.sismember("prefloop:projects", 8)


# --- /jobs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/jobs/abc.def",
        "/jobs/%00",
        "/jobs/a%2Fb",
        "/jobs/" + "x" * 300,
        "/jobs/..",
        "/jobs/rq:job:x",
        "/jobs/%E2%80%AE",
    ],
)
def test_bad_job_ids_are_404(client, path):
    r = client.get(path)
    assert r.status_code == 404 and r.json["error"] == "NotFound", (path, r.status_code)


def test_jobs_with_redis_down_is_503(settings):
    from tests.support.services import free_port

    client = app_with(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0").test_client()
    for path in ("/jobs", "/jobs?project=7", "/jobs/generate-7-abc"):
        r = client.get(path)
        assert r.status_code == 503 and r.json["error"] == "QueueUnavailable", (path, r.status_code)
