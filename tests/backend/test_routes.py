"""The Label Studio ML-backend protocol, with payloads shaped like Label Studio 1.23's."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from prefloop.label_config import load_label_config

WEBHOOKS = json.loads((Path(__file__).parents[1] / "fixtures" / "webhooks.json").read_text())
CONFIG = load_label_config("pairwise")


def setup_project(client, project="7.1764224400"):
    return client.post(
        "/setup",
        json={
            "project": project,
            "schema": CONFIG,
            "hostname": "http://ls:8080",
            "access_token": "legacy",
            "extra_params": None,
        },
    )


def test_health_is_fast_and_up(client):
    """/health and / answer UP without loading anything."""
    for path in ("/health", "/"):
        r = client.get(path)
        assert r.status_code == 200 and r.json["status"] == "UP" and r.json["queue"] == "up"


def test_setup_returns_model_version_and_registers_project(client, redis_conn):
    """/setup answers the serving model_version and remembers the project for webhooks."""
    r = setup_project(client)
    assert r.status_code == 200
    assert r.json["model_version"] == "rm-none+pi-base"
    assert redis_conn.sismember("prefloop:projects", 7)


def test_setup_rejects_config_without_pairwise(client):
    """A label config without a Pairwise tag is a 422 that says so."""
    r = client.post("/setup", json={"project": "7.1", "schema": "<View><Text name='t' value='$text'/></View>"})
    assert r.status_code == 422 and "Pairwise" in r.json["message"]


def test_predict_returns_one_empty_entry_per_task_before_a_reward_model(client, redis_conn):
    """Before any reward model, every task gets an empty list (no prediction, and nothing Label Studio
    logs as an error), in order."""
    setup_project(client)
    tasks = [{"id": i, "data": {"prompt": f"p{i}", "answer1": "a", "answer2": "b"}} for i in range(5)]
    r = client.post("/predict", json={"tasks": tasks, "project": "7.1", "label_config": CONFIG, "params": {}})
    assert r.status_code == 200
    results = r.json["results"]
    assert len(results) == 5
    assert results == [[]] * 5


def test_predict_for_tasks_without_answers_queues_generation(client, redis_conn):
    """Tasks still missing answers get no prediction, and generation for the project is queued once."""
    setup_project(client)
    tasks = [{"id": i, "data": {"prompt": f"p{i}", "answer1": "", "answer2": ""}} for i in range(3)]
    for _ in range(3):
        r = client.post("/predict", json={"tasks": tasks, "project": "7.1", "label_config": CONFIG})
        assert r.status_code == 200 and r.json["results"] == [[], [], []]
    assert redis_conn.llen("rq:queue:prefloop-gpu") == 1


@pytest.mark.parametrize("action", sorted(WEBHOOKS))
def test_every_label_studio_event_is_handled(client, redis_conn, action):
    """Each event LS 1.23 sends gets a 200: queued for those prefloop acts on, ignored otherwise."""
    setup_project(client)
    r = client.post("/webhook", json=WEBHOOKS[action])
    assert r.status_code == 200, r.json
    if action in ("TASKS_DELETED", "PROJECT_UPDATED"):
        assert r.json["status"] == "ignored" and r.json["reason"]
        assert redis_conn.llen("rq:queue:prefloop-gpu") == 0
    else:
        assert r.json["status"] == "queued"
        assert r.json["kind"] == ("generate" if action == "TASKS_CREATED" else "train_reward")
        assert redis_conn.llen("rq:queue:prefloop-gpu") == 1


def test_unknown_event_is_ignored(client):
    setup_project(client)
    r = client.post("/webhook", json={"action": "REVIEW_CREATED", "project": {"id": 7}})
    assert r.status_code == 200 and r.json["status"] == "ignored"


def test_webhook_burst_collapses_into_one_queued_job(client, redis_conn):
    """1 job waits however many annotation events arrive; START_TRAINING joins it."""
    setup_project(client)
    ids = {client.post("/webhook", json=WEBHOOKS["ANNOTATION_CREATED"]).json["job_id"] for _ in range(50)}
    ids.add(client.post("/webhook", json=WEBHOOKS["START_TRAINING"]).json["job_id"])
    assert len(ids) == 1
    assert redis_conn.llen("rq:queue:prefloop-gpu") == 1
    assert redis_conn.exists("prefloop:force:train_reward:7")


def test_webhook_for_unserved_project_is_refused(client, redis_conn):
    """A forged webhook for a project prefloop does not serve queues nothing."""
    r = client.post("/webhook", json=dict(WEBHOOKS["START_TRAINING"], project={"id": 99}))
    assert r.status_code == 404 and "99" in r.json["message"]
    assert redis_conn.llen("rq:queue:prefloop-gpu") == 0


def test_webhook_never_logs_project_secrets(client, caplog):
    setup_project(client)
    with caplog.at_level(logging.DEBUG):
        client.post("/webhook", json=WEBHOOKS["ANNOTATION_CREATED"])
    assert "SECRET" not in caplog.text


@pytest.mark.parametrize(
    "path, body, status, needle",
    [
        ("/webhook", b"{not json", 400, "not valid JSON"),
        ("/webhook", b"[1, 2]", 400, "JSON object"),
        ("/webhook", b"", 400, "empty"),
        ("/webhook", json.dumps({"project": {"id": 7}}).encode(), 400, "action"),
        ("/webhook", json.dumps({"action": "ANNOTATION_CREATED"}).encode(), 400, "project"),
        ("/webhook", json.dumps({"action": "ANNOTATION_CREATED", "project": {"id": 7}}).encode(), 400, "annotation"),
        (
            "/webhook",
            json.dumps({"action": "TASKS_CREATED", "project": {"id": 7}, "tasks": "x"}).encode(),
            400,
            "tasks",
        ),
        ("/webhook", json.dumps({"action": "START_TRAINING", "project": "abc"}).encode(), 400, "project"),
        ("/predict", json.dumps({"project": "7.1", "label_config": CONFIG}).encode(), 400, "tasks"),
        ("/predict", json.dumps({"tasks": [], "project": "7.1", "label_config": CONFIG}).encode(), 400, "empty"),
        ("/predict", json.dumps({"tasks": [1], "project": "7.1", "label_config": CONFIG}).encode(), 400, "tasks[0]"),
        ("/predict", json.dumps({"tasks": [{"data": {}}], "project": "7.1"}).encode(), 400, "label_config"),
        (
            "/predict",
            json.dumps({"tasks": [{"data": {}}], "project": "7.1", "label_config": "<View/>"}).encode(),
            422,
            "Pairwise",
        ),
        ("/setup", json.dumps({"schema": CONFIG}).encode(), 400, "project"),
        ("/setup", json.dumps({"project": "7.1", "schema": "<View"}).encode(), 422, "XML"),
    ],
)
def test_bad_input_is_a_json_4xx_that_names_the_problem(client, redis_conn, path, body, status, needle):
    setup_project(client)
    r = client.post(path, data=body, content_type="application/json")
    assert r.status_code == status, r.json
    assert needle in r.json["message"]
    assert "Traceback" not in r.get_data(as_text=True)
    assert redis_conn.llen("rq:queue:prefloop-gpu") == 0


def test_oversized_body_is_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1024
    r = client.post("/webhook", data=b"{" + b" " * 4096 + b"}", content_type="application/json")
    assert r.status_code == 413 and "larger" in r.json["message"]


def test_redis_down_gives_a_clear_503_and_health_reports_it(settings, tmp_path):
    """With Redis unreachable, webhooks get 503 naming Redis; /health still answers."""
    from dataclasses import replace

    from backend.app import create_app

    app = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"), test_config={"TESTING": True})
    c = app.test_client()
    assert c.get("/health").json["queue"] == "down"
    assert setup_project(c).json["model_version"] == "rm-none+pi-base"  # connecting still works
    r = c.post("/webhook", json=WEBHOOKS["START_TRAINING"])
    assert r.status_code == 503 and "Redis" in r.json["message"]


def test_versions_lists_serving_versions(client, app):
    """/versions names the serving model_version of each project and details every published version."""
    from backend.context import context

    setup_project(client)
    assert client.get("/versions").json["versions"] == []  # nothing published yet
    store = context(app).store
    with store.staging(7, "reward") as staged:
        (staged / "config.json").write_text("{}")
        version = store.publish(7, "reward", staged)
    r = client.get("/versions?project=7")
    assert r.status_code == 200 and r.json["versions"] == [f"{version}+pi-base"]
    assert [(d["project_id"], d["kind"], d["version"]) for d in r.json["details"]] == [(7, "reward", version)]


def test_legacy_train_queues_training(client, redis_conn):
    setup_project(client)
    r = client.post("/train", json={"project": "7.1"})
    assert r.status_code == 200 and r.json["kind"] == "train_reward"


class TestBasicAuth:
    @pytest.fixture
    def client(self, settings):
        from dataclasses import replace

        from backend.app import create_app

        app = create_app(
            replace(settings, basic_auth_user="ls", basic_auth_pass="s3cret"), test_config={"TESTING": True}
        )
        return app.test_client()

    @staticmethod
    def auth(user="ls", password="s3cret"):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    def test_protected_routes_need_credentials(self, client):
        """With BASIC_AUTH_* set, /setup, /predict, /versions and /train answer 401 without them."""
        for method, path in [
            ("post", "/setup"),
            ("post", "/predict"),
            ("get", "/versions"),
            ("post", "/train"),
            ("get", "/jobs"),
        ]:
            r = getattr(client, method)(path, json={})
            assert r.status_code == 401, path
            assert r.headers["WWW-Authenticate"].startswith("Basic")

    def test_wrong_password_is_refused(self, client):
        r = client.post("/setup", json={"project": "7.1", "schema": CONFIG}, headers=self.auth(password="nope"))
        assert r.status_code == 401

    def test_right_credentials_pass(self, client):
        r = client.post("/setup", json={"project": "7.1", "schema": CONFIG}, headers=self.auth())
        assert r.status_code == 200

    def test_health_and_event_webhooks_stay_open(self, client):
        """Label Studio sends event webhooks without credentials; they still work."""
        assert client.get("/health").status_code == 200
        client.post("/setup", json={"project": "7.1", "schema": CONFIG}, headers=self.auth())
        r = client.post("/webhook", json=WEBHOOKS["ANNOTATION_CREATED"])
        assert r.status_code == 200 and r.json["status"] == "queued"

    def test_wrong_credentials_on_webhook_are_refused(self, client):
        r = client.post("/webhook", json=WEBHOOKS["START_TRAINING"], headers=self.auth(password="x"))
        assert r.status_code == 401


def test_projects_setting_decides_which_projects_webhooks_may_trigger(settings, redis_conn):
    """With PROJECTS set, listed projects are served without /setup and others are refused."""
    from dataclasses import replace

    from backend.app import create_app

    c = create_app(replace(settings, projects=(7,)), test_config={"TESTING": True}).test_client()
    assert c.post("/webhook", json=WEBHOOKS["START_TRAINING"]).json["status"] == "queued"
    r = c.post("/webhook", json=dict(WEBHOOKS["START_TRAINING"], project={"id": 8}))
    assert r.status_code == 404 and "PROJECTS" in r.json["message"]
    assert redis_conn.llen("rq:queue:prefloop-gpu") == 1
