"""`prefloop serve` as users run it: gunicorn in its own process, honouring PORT, WORKERS, THREADS."""

from __future__ import annotations

import requests

from prefloop.label_config import load_label_config
from tests.support.services import free_port, prefloop_env, start_server


def test_serve_answers_health_setup_and_auth(settings, tmp_path):
    """The real server starts, answers /health, and enforces basic auth on /setup."""
    port = free_port()
    env = prefloop_env(
        redis_url=settings.redis_url,
        model_dir=settings.model_dir,
        workers=2,
        threads=4,
        basic_auth_user="ls",
        basic_auth_pass="pw",
    )
    server = start_server(env, port, tmp_path / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/health", timeout=2).json()["status"] == "UP"
        body = {"project": "3.1700000000", "schema": load_label_config()}
        assert requests.post(f"{base}/setup", json=body, timeout=5).status_code == 401
        r = requests.post(f"{base}/setup", json=body, auth=("ls", "pw"), timeout=5)
        assert r.status_code == 200 and r.json()["model_version"] == "rm-none+pi-base"
        log = server.output()
        assert "Booting worker" in log and log.count("Booting worker") == 2, log
    finally:
        server.stop()
