"""`prefloop doctor` against real services: a real Redis with real RQ worker registrations, a real
model directory, and nothing listening where the backend and Label Studio should be (the e2e test
tests/e2e/test_doctor.py runs it against a whole deployment)."""

from __future__ import annotations

import json
import os

from cli.main import main
from prefloop.queue import JobQueue
from tests.support.services import free_port

STACK = (
    "LABEL_STUDIO_URL",
    "LABEL_STUDIO_API_KEY",
    "REDIS_URL",
    "MODEL_DIR",
    "BACKEND_URL",
    "BASE_MODEL",
    "WEBHOOK_SECRET",
    "PROJECTS",
)


def doctor_env(monkeypatch, **values) -> None:
    for name in STACK:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))


def test_it_names_what_is_down_and_what_to_fix_and_exits_non_zero(
    settings, tmp_path, tiny_model_dir, monkeypatch, capsys
):
    doctor_env(
        monkeypatch,
        REDIS_URL=settings.redis_url,
        MODEL_DIR=tmp_path / "models",
        BASE_MODEL=tiny_model_dir,
        BACKEND_URL=f"http://127.0.0.1:{free_port()}",
        LABEL_STUDIO_URL=f"http://127.0.0.1:{free_port()}",
        LABEL_STUDIO_API_KEY="some-token",
    )
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    lines = {
        line.split()[1]: line for line in out.splitlines() if line.split() and line.split()[0] in ("ok", "FAIL", "warn")
    }
    assert lines["Redis"].startswith("ok") and "answers" in lines["Redis"], out
    assert lines["worker"].startswith("FAIL") and "start `prefloop worker`" in out, out
    assert lines["backend"].startswith("FAIL") and "does not answer" in lines["backend"], out
    assert "start `prefloop serve`" in out
    assert lines["MODEL_DIR"].startswith("ok") and lines["model"].startswith("ok"), out
    assert lines["Label"].startswith("FAIL") and "unreachable" in lines["Label"], out
    assert out.strip().splitlines()[-1].startswith("3 problems to fix"), out


def test_a_registered_worker_an_unwritable_model_dir_and_a_missing_model_are_reported(
    settings, tmp_path, monkeypatch, capsys
):
    from rq import Worker

    q = JobQueue(settings)
    worker = Worker([q.queue("default"), q.queue("gpu")], connection=q.connection, name=f"doctor-{os.getpid()}")
    worker.register_birth()  # what `prefloop worker` does when it starts
    not_a_dir = tmp_path / "models"
    not_a_dir.write_text("a file where the versions should go")
    try:
        doctor_env(
            monkeypatch,
            REDIS_URL=settings.redis_url,
            MODEL_DIR=not_a_dir,
            BASE_MODEL=tmp_path / "no-model",
            BACKEND_URL=f"http://127.0.0.1:{free_port()}",
            LABEL_STUDIO_URL="http://127.0.0.1:9",
            LABEL_STUDIO_API_KEY="t",
        )
        assert main(["doctor", "--json"]) == 1
    finally:
        worker.register_death()
    checks = {c["part"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["worker"]["status"] == "ok" and worker.name in checks["worker"]["what"]
    assert checks["MODEL_DIR"]["status"] == "FAIL" and "not a directory" in checks["MODEL_DIR"]["what"]
    assert checks["model"]["status"] == "FAIL" and "download-model" in checks["model"]["fix"]


def test_wrong_settings_stop_it_naming_the_variable(monkeypatch, capsys):
    doctor_env(monkeypatch, REDIS_URL="localhost:6379")
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert "settings are wrong" in err and "REDIS_URL" in err and "localhost:6379" in err, err
