"""`prefloop init` (the compose first start) against a real Label Studio and a real `prefloop serve`."""

from __future__ import annotations

import logging
import uuid

import pytest
import redis

from cli.main import main
from prefloop.label_config import load_label_config
from tests.support.services import free_port, prefloop_env, start_server


@pytest.fixture
def backend_url(settings, tmp_path):
    """A real `prefloop serve` on a private port, reachable by the test Label Studio."""
    port = free_port()
    server = start_server(
        prefloop_env(redis_url=settings.redis_url, model_dir=settings.model_dir), port, tmp_path / "serve.log"
    )
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def init_env(monkeypatch, ls_settings, backend_url):
    """The environment `prefloop init` reads in the compose `init` service, pointed at the test servers."""
    title = f"prefloop init {uuid.uuid4().hex[:8]}"
    for name, value in {
        "LABEL_STUDIO_URL": ls_settings.label_studio_url,
        "LABEL_STUDIO_API_KEY": ls_settings.label_studio_api_key,
        "REDIS_URL": ls_settings.redis_url,
        "BACKEND_URL": backend_url,
        "PROJECT_TITLE": title,
        "LABEL_STUDIO_PUBLIC_URL": "http://localhost:8080",
        "LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROJECTS", raising=False)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield {"title": title, "backend_url": backend_url}
    root.setLevel(level)  # `prefloop init` sets up logging as an entry point does; undo it for later tests
    root.handlers[:] = handlers


def _state(label_studio, title: str) -> dict:
    projects = [
        p
        for p in label_studio.api("GET", "/api/projects", params={"page_size": 1000})["results"]
        if p["title"] == title
    ]
    ids = [p["id"] for p in projects]
    # Listing ML backends makes Label Studio re-check them (their timestamps move): compare what counts.
    backends = {
        pid: [
            {k: b[k] for k in ("id", "url", "title", "state")}
            for b in label_studio.api("GET", "/api/ml", params={"project": pid})
        ]
        for pid in ids
    }
    webhooks = {
        pid: [
            {k: w[k] for k in ("id", "url")} for w in label_studio.api("GET", "/api/webhooks", params={"project": pid})
        ]
        for pid in ids
    }
    return {"ids": ids, "backends": backends, "webhooks": webhooks, "configs": [p["label_config"] for p in projects]}


def test_first_start_creates_connects_and_a_second_run_changes_nothing(init_env, label_studio, settings, capsys):
    """The first run creates the pairwise project and connects the backend; the second changes nothing."""
    assert main(["init"]) == 0
    first = capsys.readouterr().out
    state = _state(label_studio, init_env["title"])
    try:
        assert len(state["ids"]) == 1, state
        project_id = state["ids"][0]
        assert [c.strip() for c in state["configs"]] == [load_label_config("pairwise").strip()]
        [ml] = state["backends"][project_id]
        assert ml["url"].rstrip("/") == init_env["backend_url"]
        # Label Studio called /setup (the backend now serves the project) and created the webhook.
        assert redis.Redis.from_url(settings.redis_url).sismember("prefloop:projects", project_id)
        assert [w["url"] for w in state["webhooks"][project_id]] == [init_env["backend_url"] + "/webhook"]
        assert "created" in first and "connected" in first and "admin@example.com" in first
        assert f"http://localhost:8080/projects/{project_id}/data" in first
        # Annotators: an empty choice cannot be submitted, and the first tab hides the prefloop column.
        assert label_studio.api("GET", f"/api/projects/{project_id}")["enable_empty_annotation"] is False
        tabs = label_studio.api("GET", "/api/dm/views", params={"project": project_id})
        assert tabs and all("tasks:data.prefloop" in t["data"]["hiddenColumns"]["explore"] for t in tabs), tabs

        assert main(["init"]) == 0
        second = capsys.readouterr().out
        assert "already connected" in second and "nothing to do" in second
        assert _state(label_studio, init_env["title"]) == state
    finally:
        for pid in state["ids"]:
            label_studio.api("DELETE", f"/api/projects/{pid}")


def test_configured_projects_are_connected_and_a_missing_one_is_named(init_env, label_studio, monkeypatch, capsys):
    """With PROJECTS set, init connects those projects (creating none) and names an id that does not exist."""
    project_id = label_studio.create_project(load_label_config("pairwise"), title=init_env["title"] + " given")
    try:
        monkeypatch.setenv("PROJECTS", str(project_id))
        assert main(["init"]) == 0
        assert "found" in capsys.readouterr().out
        [ml] = label_studio.api("GET", "/api/ml", params={"project": project_id})
        assert ml["url"].rstrip("/") == init_env["backend_url"]
        assert _state(label_studio, init_env["title"])["ids"] == []  # nothing was created
        assert label_studio.api("GET", f"/api/projects/{project_id}")["enable_empty_annotation"] is False

        monkeypatch.setenv("PROJECTS", "99999999")
        assert main(["init"]) == 1
        assert "99999999" in capsys.readouterr().err
    finally:
        label_studio.api("DELETE", f"/api/projects/{project_id}")


def test_a_project_without_pairwise_is_refused(init_env, label_studio, capsys):
    """A project found by title whose labeling config has no <Pairwise> stops init with the fix, unconnected."""
    xml = '<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="a"/></Choices></View>'
    project_id = label_studio.create_project(xml, title=init_env["title"])
    try:
        assert main(["init"]) == 1
        assert "Pairwise" in capsys.readouterr().err
        assert label_studio.api("GET", "/api/ml", params={"project": project_id}) == []
    finally:
        label_studio.api("DELETE", f"/api/projects/{project_id}")
