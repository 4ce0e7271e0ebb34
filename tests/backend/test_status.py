"""The /status page people open to watch the loop: versions, metrics, plots, jobs and errors."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from prefloop.artifacts import ArtifactStore
from prefloop.jobkinds import JobKind
from prefloop.queue import JobQueue

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def publish(store: ArtifactStore, project_id: int, kind: str, metrics: dict) -> str:
    with store.staging(project_id, kind) as staged:
        (staged / "config.json").write_text("{}")
        (staged / "metrics.json").write_text(json.dumps(metrics))
        (staged / "curve.png").write_bytes(PNG)
        return store.publish(project_id, kind, staged)


def failing_job(**_):
    from prefloop.errors import LabelStudioUnavailable

    raise LabelStudioUnavailable("Label Studio at http://x is unreachable")


def run_failing_job(q: JobQueue, job_id: str) -> None:
    """A job that fails in a real (in-process) RQ worker, the way RQ records failures."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    queue = q.queue("default")
    queue.enqueue(
        "tests.backend.test_status.failing_job",
        job_id=job_id,
        kwargs={"project_id": 3},
        meta={"kind": "generate", "project_id": 3, "reason": "TASKS_CREATED"},
    )
    SimpleWorker([queue], connection=q.connection, serializer=JSONSerializer).work(burst=True)


def test_status_shows_serving_versions_metrics_and_plots(client, settings):
    """The serving reward model and policy appear with their metrics and an inline curve."""
    store = ArtifactStore(settings.model_dir)
    old = publish(store, 5, "reward", {"eval": {"accuracy": 0.55}})
    rm = publish(store, 5, "reward", {"eval": {"accuracy": 0.8125}, "train": {"loss": 0.4}})
    pi = publish(store, 5, "policy", {"objective/kl": 0.0123})
    r = client.get("/status?project=5")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert rm in html and pi in html and old in html
    assert "eval/accuracy" in html and "0.8125" in html and "objective/kl" in html
    assert f"/status/plot/5/reward/{rm}/curve.png" in html
    png = client.get(f"/status/plot/5/reward/{rm}/curve.png")
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data == PNG


def test_status_lists_projects_jobs_with_progress_and_errors(client, settings, redis_conn):
    """Queued jobs show with their stage and progress; failed jobs show their message."""
    q = JobQueue(settings)
    client.post("/setup", json={"project": "3.1"})
    waiting = q.enqueue(JobKind.TRAIN_REWARD, 3, reason="ANNOTATION_CREATED")
    job = q.fetch(waiting.job_id)
    job.meta.update(stage="training", progress={"done": 7, "total": 20, "loss": 0.25})
    job.save_meta()
    run_failing_job(q, "generate-3-deadbeef")
    html = client.get("/status").get_data(as_text=True)
    assert 'id="project-3"' in html
    assert waiting.job_id in html and "training 7/20" in html and "loss=0.25" in html
    assert "LabelStudioUnavailable: Label Studio at http://x is unreachable" in html
    assert "Workers:" in html and "none running" in html


@pytest.mark.parametrize(
    "path",
    [
        "/status/plot/5/reward/..%2F..%2Fcurrent.json/curve.png",
        "/status/plot/5/reward/{rm}/..%2Fmetrics.json",
        "/status/plot/5/reward/{rm}/metrics.json",
        "/status/plot/5/secrets/{rm}/curve.png",
        "/status/plot/5/policy/{rm}/curve.png",
        "/status/plot/6/reward/{rm}/curve.png",
        "/status/plot/5/reward/rm-missing/curve.png",
        "/status/plot/5/reward/{rm}/..png",
    ],
)
def test_plot_route_serves_only_pngs_inside_published_versions(client, settings, path):
    """No path traversal: only a *.png directly inside a published version is served."""
    rm = publish(ArtifactStore(settings.model_dir), 5, "reward", {})
    (settings.model_dir / "5" / "reward" / rm / "metrics.json").write_text("{}")
    r = client.get(path.format(rm=rm))
    assert r.status_code == 404


def test_status_page_escapes_html_and_survives_redis_down(settings):
    """With Redis down the page still renders and says so; text from metrics is escaped."""
    from backend.app import create_app

    store = ArtifactStore(settings.model_dir)
    publish(store, 4, "reward", {"note": "<script>alert(1)</script>"})
    app = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"), test_config={"TESTING": True})
    r = app.test_client().get("/status")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "unreachable" in html and 'id="project-4"' in html
    assert "<script>alert" not in html and "&lt;script&gt;" in html


def test_status_needs_basic_auth_when_configured(settings):
    """With BASIC_AUTH_* set, /status and plots answer 401 without credentials."""
    from backend.app import create_app

    app = create_app(replace(settings, basic_auth_user="u", basic_auth_pass="p"), test_config={"TESTING": True})
    c = app.test_client()
    assert c.get("/status").status_code == 401
    ok = c.get("/status", headers={"Authorization": "Basic " + base64.b64encode(b"u:p").decode()})
    assert ok.status_code == 200


def test_status_rejects_a_bad_project_id(client):
    assert client.get("/status?project=abc").status_code == 400


def failing_through_run(project_id: int, **_):
    """A job body that fails inside worker.jobs._run, as generation, training and PPO do."""
    from prefloop.errors import LabelStudioUnavailable
    from prefloop.jobkinds import JobKind
    from worker.jobs import _run

    def body(forced):
        raise LabelStudioUnavailable("Label Studio at http://x is unreachable after 4 tries")

    return _run(JobKind.GENERATE, project_id, body)


def test_a_job_waiting_for_its_retry_shows_the_last_error(client, settings):
    """While RQ waits to retry a failed job, the page shows why the last attempt failed."""
    from rq import Retry, SimpleWorker
    from rq.serializers import JSONSerializer

    from worker import runtime

    runtime.init(settings)
    q = JobQueue(settings)
    queue = q.queue("gpu")
    queue.enqueue(
        "tests.backend.test_status.failing_through_run",
        job_id="generate-3-retrying",
        kwargs={"project_id": 3},
        retry=Retry(max=2, interval=[60]),
        meta={"kind": "generate", "project_id": 3, "reason": "x"},
    )
    SimpleWorker([queue], connection=q.connection, serializer=JSONSerializer).work(burst=True)
    job = q.jobs(3)[0]
    assert job["status"] == "scheduled" and job["retries_left"] == 1
    assert job["error"] == "LabelStudioUnavailable: Label Studio at http://x is unreachable after 4 tries"
    html = client.get("/status?project=3").get_data(as_text=True)
    assert "unreachable after 4 tries (retries left: 1)" in html


def test_status_shows_accuracy_intervals_history_and_says_when_a_version_is_within_noise(client, settings):
    """Each reward version's accuracy comes with its 95% interval and eval pairs; a version whose interval
    overlaps the previous one is called within noise, one that clears it is called better; the history plot
    (accuracy against pairs used, policy reward and KL per version) is an SVG."""
    store = ArtifactStore(settings.model_dir)
    # the first version has no CI keys (written before them): its interval is computed from eval/pairs
    first = publish(store, 8, "reward", {"eval/accuracy": 0.5556, "eval/pairs": 27, "pairs_used": 136})
    noisy = publish(
        store,
        8,
        "reward",
        {
            "eval/accuracy": 0.7407,
            "eval/accuracy_ci_low": 0.5532,
            "eval/accuracy_ci_high": 0.8683,
            "eval/pairs": 27,
            "pairs_used": 150,
        },
    )
    better = publish(
        store,
        8,
        "reward",
        {
            "eval/accuracy": 0.93,
            "eval/accuracy_ci_low": 0.9012,
            "eval/accuracy_ci_high": 0.9512,
            "eval/pairs": 400,
            "pairs_used": 2000,
        },
    )
    publish(store, 8, "policy", {"trainer": "ppo", "final_reward": 0.42, "final_kl": 1.5})
    html = client.get("/status?project=8").get_data(as_text=True)
    assert "0.56 [95% CI 0.37-0.72] on 27 eval pairs" in html, "interval computed from eval/pairs for older versions"
    assert f"0.74 [95% CI 0.55-0.87] on 27 eval pairs; overlaps {first}&#39;s interval: not measurably better" in html
    assert f"0.93 [95% CI 0.90-0.95] on 400 eval pairs; better than {noisy} (intervals do not overlap)" in html
    assert '<p class="verdict">Eval accuracy 0.93' in html, "the serving version's verdict above its metrics"
    assert "<td>0.42</td><td>1.50</td>" in html, "policy reward and KL per version"
    assert better in html and "/status/history/8.svg" in html
    svg = client.get("/status/history/8.svg")
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    text = svg.get_data(as_text=True)
    assert "<svg" in text and "preference pairs used" in text and "KL to reference" in text


def finished_with(result: dict, **_):
    return result


def test_a_finished_job_shows_its_outcome_in_words_not_cut_json(client, settings):
    """A skipped run's whole reason and a published run's accuracy with interval read as sentences."""
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    q = JobQueue(settings)
    queue = q.queue("gpu")
    reason = (
        "3 new, changed or deleted annotation(s) since the last reward model: fewer than "
        "MIN_NEW_ANNOTATIONS=10 (the Train button trains on any change); this sentence is longer than "
        "the 160 characters the page used to cut JSON at, and it ends here."
    )
    queue.enqueue(
        "tests.backend.test_status.finished_with",
        job_id="train_reward-9-a",
        kwargs={"result": {"status": "skipped", "reason": reason, "pairs": 3}},
        meta={"kind": "train_reward", "project_id": 9, "reason": "x"},
    )
    queue.enqueue(
        "tests.backend.test_status.finished_with",
        job_id="train_reward-9-b",
        kwargs={
            "result": {
                "status": "published",
                "version": "rm-20261201-000000-000000",
                "metrics": {"eval/accuracy": 0.8, "eval/pairs": 40},
                "ppo": {"queued": False, "reason": "eval accuracy 0.8 < 0.9"},
            }
        },
        meta={"kind": "train_reward", "project_id": 9, "reason": "x"},
    )
    SimpleWorker([queue], connection=q.connection, serializer=JSONSerializer).work(burst=True)
    html = client.get("/status?project=9").get_data(as_text=True)
    assert f"skipped: {reason}" in html
    assert (
        "published rm-20261201-000000-000000; eval accuracy 0.80 [95% CI 0.65-0.90] on 40 pairs; "
        "ppo not queued: eval accuracy 0.8 &lt; 0.9"
    ) in html
    assert "{&#34;" not in html and '{"status"' not in html


def test_status_shows_per_annotator_agreement_of_the_serving_reward_model(client, settings):
    store = ArtifactStore(settings.model_dir)
    publish(
        store,
        10,
        "reward",
        {
            "eval/accuracy": 0.9,
            "eval/pairs": 30,
            "annotators": {
                "1": {
                    "votes": 12,
                    "majority": {"rate": 1.0, "low": 0.51, "high": 1.0, "n": 4},
                    "model": {"rate": 0.92, "low": 0.65, "high": 0.99, "n": 12},
                },
                "3": {"votes": 8, "majority": {"rate": 0.0, "low": 0.0, "high": 0.32, "n": 8}, "model": None},
            },
        },
    )
    html = client.get("/status?project=10").get_data(as_text=True)
    assert 'id="annotators-10"' in html
    assert "<td>1</td><td>12</td><td>1.00 [0.51-1.00] of 4</td><td>0.92 [0.65-0.99] of 12</td>" in html
    assert "<td>3</td><td>8</td><td>0.00 [0.00-0.32] of 8</td><td>n/a</td>" in html
