"""/metrics: Prometheus text that a real parser reads, with queue depth, job outcomes and durations,
/predict latency and the serving versions; it answers even when Redis is down."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from backend.app import create_app
from prefloop.artifacts import ArtifactStore
from prefloop.jobkinds import JobKind
from prefloop.label_config import load_label_config
from prefloop.queue import JobQueue
from tests.support.prometheus import scrape, value


def test_queue_depth_job_outcomes_and_durations(client, settings):
    """Queued jobs show as queue depth; after a worker runs them, finished and failed counts and durations show."""
    jq = JobQueue(settings)
    jq.enqueue(JobKind.PING, 1, reason="metrics test")
    jq.enqueue(JobKind.PING, 2, reason="metrics test")
    jq.queue("default").enqueue(
        "prefloop.labelstudio.parse_project_id",
        args=["not-a-project"],
        meta={"kind": "ping", "project_id": 3},
        failure_ttl=600,
    )
    before = scrape(client)
    assert value(before, "prefloop_redis_up") == 1
    assert value(before, "prefloop_queue_depth", queue="default") == 3
    assert value(before, "prefloop_queue_depth", queue="gpu") == 0

    SimpleWorker([jq.queue("default")], connection=jq.connection, serializer=JSONSerializer).work(burst=True)
    after = scrape(client)
    assert value(after, "prefloop_queue_depth", queue="default") == 0
    assert value(after, "prefloop_jobs", queue="default", state="finished") == 2
    assert value(after, "prefloop_jobs", queue="default", state="failed") == 1
    assert value(after, "prefloop_failed_jobs", kind="ping") == 1
    assert value(after, "prefloop_recent_jobs_finished", kind="ping") == 2
    p50, top = (value(after, "prefloop_recent_job_duration_seconds", kind="ping", stat=s) for s in ("p50", "max"))
    assert 0 <= p50 <= top


def test_predict_latency_is_a_histogram_by_status(client):
    """Each /predict request lands in the latency histogram, counted by HTTP status and tasks."""
    tasks = [{"id": i, "data": {"prompt": f"p{i}", "answer1": "a", "answer2": "b"}} for i in range(3)]
    ok = client.post("/predict", json={"tasks": tasks, "project": "4.1700000000", "label_config": load_label_config()})
    bad = client.post("/predict", json={"tasks": [], "project": "4.1700000000", "label_config": load_label_config()})
    assert (ok.status_code, bad.status_code) == (200, 400)
    s = scrape(client)
    assert value(s, "prefloop_predict_seconds_count") == 2
    assert value(s, "prefloop_predict_seconds_bucket", le="+Inf") == 2
    assert value(s, "prefloop_predict_requests_total", code="200") == 1
    assert value(s, "prefloop_predict_requests_total", code="400") == 1
    assert value(s, "prefloop_predict_tasks_total") == 3
    buckets = sorted(
        (float(dict(labels)["le"]), v) for (name, labels), v in s.items() if name == "prefloop_predict_seconds_bucket"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert value(s, "prefloop_predict_seconds_sum") > 0


def test_serving_versions_are_labelled(client, settings):
    """A published reward model shows as the project's serving version, with its publish time."""
    store = ArtifactStore(settings.model_dir)
    with store.staging(5, "reward") as staged:
        (staged / "config.json").write_text("{}")
        version = store.publish(5, "reward", staged)
    s = scrape(client)
    assert value(s, "prefloop_serving_version_info", project="5", kind="reward", version=version) == 1
    assert value(s, "prefloop_serving_version_published_timestamp_seconds", project="5", kind="reward") > 0
    assert not [k for k in s if k[0] == "prefloop_serving_version_info" and dict(k[1])["kind"] == "policy"]


def test_metrics_answer_when_redis_is_down(settings):
    """With Redis unreachable, /metrics still answers and says so."""
    app = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"), test_config={"TESTING": True})
    s = scrape(app.test_client())
    assert value(s, "prefloop_redis_up") == 0


@pytest.mark.parametrize("creds, code", [(None, 401), ("scraper:secret", 200)])
def test_metrics_follow_basic_auth(settings, creds, code):
    """With BASIC_AUTH_* set, a scrape needs the credentials."""
    app = create_app(
        replace(settings, basic_auth_user="scraper", basic_auth_pass="secret"), test_config={"TESTING": True}
    )
    headers = {"Authorization": "Basic " + base64.b64encode(creds.encode()).decode()} if creds else {}
    assert app.test_client().get("/metrics", headers=headers).status_code == code
