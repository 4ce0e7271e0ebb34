"""`prefloop doctor` against a whole deployment: the session's Label Studio, Redis, `prefloop serve`
and `prefloop worker`, and a project made by `prefloop init`'s code; then a WEBHOOK_SECRET the
project's webhook does not carry."""

from __future__ import annotations

import subprocess
import uuid

from cli.commands.init import first_start
from prefloop.settings import Settings
from tests.support.services import PREFLOOP, REPO


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(PREFLOOP + ["doctor", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_doctor_says_everything_runs_names_the_project_and_its_webhook_and_finds_a_missing_secret(stack, label_studio):
    title = f"doctor {uuid.uuid4().hex[:6]}"
    settings = Settings.from_env(
        {},
        label_studio_url=label_studio.url,
        label_studio_api_key=label_studio.token,
        backend_url=stack.url,
        project_title=title,
    )
    project = first_start(settings).projects[0].id
    env = {**stack.env(), "PROJECT_TITLE": title}
    env.pop("WEBHOOK_SECRET", None)

    r = doctor(env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for part, words in (
        ("Redis", "answers"),
        ("worker", "worker(s) listening"),
        ("backend", "/health answers"),
        ("Label Studio", f"accepts the token (user {label_studio.email})"),
        (f"project {project}", repr(title)),
        (f"project {project} backend", f"{stack.url} is connected; Label Studio sees it connected"),
        (f"project {project} webhook", f"{stack.url}/webhook (active)"),
    ):
        line = next((x for x in out.splitlines() if x.startswith("ok") and f" {part} " in x), None)
        assert line is not None and words in line, f"{part}: {words!r} not in\n{out}"
    assert "empty annotations are allowed" not in out  # prefloop init refused them
    assert out.strip().splitlines()[-1].startswith("everything needed is running and reachable")

    r = doctor({**env, "WEBHOOK_SECRET": "a-secret-label-studio-does-not-send"}, "--project", str(project))
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if f"project {project} webhook" in x)
    assert line.startswith("FAIL") and "without the right X-Prefloop-Webhook-Secret" in line, r.stdout
    assert "fix: run `prefloop init`" in r.stdout and "a-secret-label-studio-does-not-send" not in r.stdout
