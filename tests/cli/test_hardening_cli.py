"""The command-line side of issue 15: `prefloop init` puts WEBHOOK_SECRET on Label Studio's webhook
(real Label Studio, real `prefloop serve`), and `prefloop versions` refuses odd names without a
traceback."""

from __future__ import annotations

import logging
import uuid

import pytest
import redis
import requests

from cli.main import main
from prefloop.labelstudio import WEBHOOK_SECRET_HEADER
from tests.support.services import free_port, prefloop_env, start_server, wait_until

SECRET = "test-webhook-secret-" + uuid.uuid4().hex[:8]


@pytest.fixture
def secured(monkeypatch, settings, ls_settings, tmp_path):
    """A real `prefloop serve` with WEBHOOK_SECRET, and the environment `prefloop init` reads."""
    port = free_port()
    env = prefloop_env(
        redis_url=settings.redis_url, model_dir=settings.model_dir, webhook_secret=SECRET, job_min_interval=0
    )
    server = start_server(env, port, tmp_path / "serve.log")
    title = f"prefloop secret {uuid.uuid4().hex[:8]}"
    for name, value in {
        "LABEL_STUDIO_URL": ls_settings.label_studio_url,
        "LABEL_STUDIO_API_KEY": ls_settings.label_studio_api_key,
        "REDIS_URL": settings.redis_url,
        "BACKEND_URL": f"http://127.0.0.1:{port}",
        "PROJECT_TITLE": title,
        "WEBHOOK_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROJECTS", raising=False)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield {"url": f"http://127.0.0.1:{port}", "title": title, "server": server}
    root.setLevel(level)
    root.handlers[:] = handlers
    server.stop()


def test_init_sets_the_secret_on_the_webhook_and_real_events_pass(secured, label_studio, settings, capsys):
    """`prefloop init` connects the backend and puts X-Prefloop-Webhook-Secret on the webhook Label
    Studio created; a real annotation then reaches /webhook with it, while a forged event without it
    is refused. A second run finds the header already set."""
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    project = int(out.split("(id ")[1].split(")")[0])
    hooks = [h for h in label_studio.webhooks(project) if h["url"] == secured["url"] + "/webhook"]
    assert len(hooks) == 1 and hooks[0]["headers"] == {WEBHOOK_SECRET_HEADER: SECRET}, hooks
    forged = requests.post(
        secured["url"] + "/webhook",
        timeout=5,
        json={"action": "ANNOTATION_CREATED", "project": {"id": project}, "annotation": {"id": 1}},
    )
    assert forged.status_code == 401 and WEBHOOK_SECRET_HEADER in forged.json()["message"]
    conn = redis.Redis.from_url(settings.redis_url)
    assert conn.get(f"prefloop:changes:{project}") is None
    label_studio.import_tasks(project, [{"prompt": "p", "answer1": "a", "answer2": "b"}])
    task = label_studio.tasks(project)[0]
    label_studio.annotate(task["id"], "left")
    wait_until(
        lambda: conn.get(f"prefloop:changes:{project}") is not None, 20, "the annotation event to pass the secret check"
    )
    assert main(["init"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_versions_refuses_odd_names_without_a_traceback(settings, monkeypatch, capsys):
    """An over-long version name gave a traceback (File name too long) in `prefloop versions`."""
    monkeypatch.setenv("MODEL_DIR", str(settings.model_dir))
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    for args in (["--set-current", "rm-" + "9" * 300], ["--set-current", "xx-1"], ["--pin", "rm-../../etc"]):
        assert main(["versions", "--project", "7", *args]) == 1
        assert "is not a version name" in capsys.readouterr().err
    assert main(["versions", "--project", "9" * 300]) == 1
    assert "project id" in capsys.readouterr().err


def test_prefloop_up_sets_a_webhook_secret_by_default(tmp_path, monkeypatch):
    """`prefloop up` generates WEBHOOK_SECRET once, keeps it in up.json, and gives it to the backend
    (and to the `prefloop init` step that puts it on the webhook); one set in the environment wins."""
    from argparse import Namespace

    from cli.commands.up import LocalLoop, State

    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    state = State.load(tmp_path / "up.json")
    state.save(tmp_path / "up.json")
    assert len(state.webhook_secret) >= 24 and State.load(tmp_path / "up.json").webhook_secret == state.webhook_secret
    loop = LocalLoop(Namespace(label_studio_url=None, ls_port=18999, port=18998, redis_port=18997), state, tmp_path)
    assert loop.env()["WEBHOOK_SECRET"] == state.webhook_secret
    monkeypatch.setenv("WEBHOOK_SECRET", "from-the-environment")
    assert loop.env()["WEBHOOK_SECRET"] == "from-the-environment"
