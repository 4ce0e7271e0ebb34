"""Shared fixtures: a private Redis server, a tiny offline GPT-2, settings, the Flask app."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from prefloop.settings import Settings
from tests.support.services import RedisServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
OUTPUT_DIR = Path(os.environ.get("PREFLOOP_TEST_OUTPUT", Path(__file__).resolve().parent.parent / "test-output"))


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_conn(redis_server):
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushdb()
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from cli.tinymodel import build_tiny_gpt2

    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory):
    """tiny_family_dir("llama") -> a tiny model of that family (cli.tinymodel.FAMILIES), built once per session."""
    from cli.tinymodel import build_tiny

    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return built[family]

    return get


@pytest.fixture
def settings(redis_server, redis_conn, tmp_path, tiny_model_dir) -> Settings:
    return Settings.from_env(
        {},
        redis_url=redis_server.url,
        model_dir=tmp_path / "models",
        base_model=str(tiny_model_dir),
        label_studio_url="http://127.0.0.1:9",
        label_studio_api_key="test-token",
        job_min_interval=0.0,
        device="cpu",
    )


@pytest.fixture
def app(settings):
    from backend.app import create_app

    app = create_app(settings, test_config={"TESTING": True})
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """One real Label Studio server for the whole session (about 40 s to start). Set
    PREFLOOP_TEST_LS_PORT to reuse one already running with the test token (faster while developing)."""
    from tests.support.labelstudio_server import LabelStudioServer

    port = os.environ.get("PREFLOOP_TEST_LS_PORT")
    if port:
        yield LabelStudioServer(data_dir=tmp_path_factory.mktemp("ls-reused"), port=int(port))
        return
    server = LabelStudioServer(data_dir=tmp_path_factory.mktemp("label-studio")).start()
    yield server
    server.stop()


@pytest.fixture
def ls_settings(settings, label_studio) -> Settings:
    """Settings pointing at the real Label Studio server."""
    from dataclasses import replace

    return replace(settings, label_studio_url=label_studio.url, label_studio_api_key=label_studio.token)


def pytest_collection_modifyitems(config, items):
    """Every test that needs the real Label Studio is an e2e test, wherever it lives, so the fast
    lane `-m "not e2e"` starts no Label Studio."""
    for item in items:
        if "label_studio" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)
