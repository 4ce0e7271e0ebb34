"""`prefloop up`, the README's main command: everything it starts, the demo project it makes, what it
prints, Ctrl-C, and a second run that reuses what is there. It runs against the session's Label
Studio (--label-studio-url); starting Label Studio itself goes through the same code
(cli/localstack.py) as the `label_studio` fixture."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
import uuid

import pytest
import requests

from cli.localstack import STACK_KEYS, port_free
from tests.e2e.conftest import wait_filled
from tests.support.services import PREFLOOP, REPO, descendants, free_port, prefloop_env, wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
SAMPLES = sum(1 for line in (REPO / "examples" / "prompts.jsonl").read_text().splitlines() if line.strip())


class Up:
    """`prefloop up` in its own process, its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            PREFLOOP + ["up", *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> str:
        try:
            wait_until(
                lambda: text in self.output or self.proc.poll() is not None, timeout, f"{text!r} from prefloop up"
            )
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.output}") from None
        assert text in self.output, self.output
        return self.output

    def ctrl_c(self, timeout: float = 120) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)  # what the terminal sends to the foreground group
        return self.proc.wait(timeout)


@pytest.fixture
def up_env(label_studio):
    return prefloop_env(label_studio_api_key=label_studio.token, project_title=f"up demo {uuid.uuid4().hex[:6]}")


def test_up_starts_the_loop_prints_where_to_go_stops_on_ctrl_c_and_restarts_with_the_same_project(
    label_studio, tmp_path, up_env
):
    """Offline it says so and runs the tiny model; it creates and connects the demo project, imports
    the sample prompts (answered by its worker), prints the URLs; Ctrl-C stops every process it
    started; a second run finds the project, the model and the data again."""
    port, redis_port = free_port(), free_port()
    args = [
        "--state-dir",
        str(tmp_path / "state"),
        "--port",
        str(port),
        "--redis-port",
        str(redis_port),
        "--label-studio-url",
        label_studio.url,
    ]
    first = Up(args, up_env)
    out = first.wait_for("Ctrl-C stops everything", 180)
    assert "OFFLINE" in out and "tiny 2-layer GPT-2" in out
    project = int(re.search(rf"Label Studio\s+{label_studio.url}/projects/(\d+)/data", out).group(1))
    assert "created; backend connected" in out and f"imported {SAMPLES} sample prompts" in out
    status = re.search(r"status page\s+(\S+)", out).group(1)
    assert requests.get(status, timeout=10).ok
    stack = Stack(tmp_path, label_studio, tmp_path, port=port)  # only for its waiting helpers
    wait_filled(label_studio, stack, project, SAMPLES)
    children = descendants(first.proc.pid)
    assert children, "redis, backend and worker run as child processes"
    state = json.loads((tmp_path / "state" / "up.json").read_text())
    assert no_secret_in_arguments(children, [label_studio.token, state["password"], state.get("webhook_secret")])
    assert state["urls"]["status"] == status and state["urls"]["label_studio"] == label_studio.url
    assert state["urls"]["redis"] == f"redis://127.0.0.1:{redis_port}/0"
    uses_the_stack(tmp_path / "state", project, label_studio)
    tiny_model_is_announced(label_studio, project, status, out)

    assert first.ctrl_c() == 0, first.output
    assert "everything stopped" in first.output
    assert port_free(port) and port_free(redis_port)
    time.sleep(1)
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid)], (
        "no process of prefloop up is left"
    )

    second = Up(args, up_env)
    try:
        out = second.wait_for("Ctrl-C stops everything", 180)
        assert "chosen at the first start" in out
        assert f"(id {project}) found; backend already connected" in out and "sample prompts" not in out
        assert len(label_studio.tasks(project)) == SAMPLES
    finally:
        assert second.ctrl_c() == 0, second.output


def no_secret_in_arguments(pids: list[int], secrets: list[str | None]) -> bool:
    """Any local user reads /proc/<pid>/cmdline (what `ps` shows): no secret may be in it."""
    for pid in pids:
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        leaked = [s for s in secrets if s and s in argv]
        assert not leaked, f"process {pid} has a secret in its arguments: {argv.replace(chr(0), ' ')}"
    return True


def uses_the_stack(state_dir, project: int, label_studio) -> None:
    """A new terminal with no setting: `prefloop jobs` and `prefloop doctor` find the stack."""
    env_file = state_dir / "env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    env = {k: v for k, v in prefloop_env().items() if k not in STACK_KEYS + ("PROJECT_TITLE",)}
    env["PREFLOOP_STATE_DIR"] = str(state_dir)
    jobs = subprocess.run(
        PREFLOOP + ["jobs", "--project", str(project)],
        env=env,
        cwd=state_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert jobs.returncode == 0 and "generate" in jobs.stdout, jobs.stdout + jobs.stderr
    assert "local stack" in jobs.stderr, jobs.stderr
    doctor = subprocess.run(
        PREFLOOP + ["doctor"], env=env, cwd=state_dir.parent, capture_output=True, text=True, timeout=120
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"project {project} webhook" in doctor.stdout and "tiny GPT-2" in doctor.stdout, doctor.stdout


def tiny_model_is_announced(label_studio, project: int, status: str, out: str) -> None:
    """Offline, annotators (a line atop every task, the project's instructions shown before labeling)
    and operators (the status page, `prefloop up`'s output) read why the answers are gibberish."""
    settings = label_studio.api("GET", f"/api/projects/{project}")
    assert "Tiny offline model" in settings["expert_instruction"] and settings["show_instruction"], settings
    assert "prefloop-tiny-note" in settings["label_config"], "the note heads every task's labeling interface"
    assert "gibberish" in requests.get(status, timeout=10).text
    assert "answers are gibberish, as expected" in out


def test_label_studio_gets_its_login_from_the_environment_never_from_its_arguments(label_studio, tmp_path):
    """Started as `prefloop up` starts it (cli/localstack.py): the password and the token are not in
    its arguments, and still the admin logs in with them."""
    from tests.support.labelstudio_server import LabelStudioServer

    own = label_studio if label_studio.proc is not None else LabelStudioServer(data_dir=tmp_path / "ls")
    try:
        if own is not label_studio:
            own.start(420)  # a fresh data directory: migrations take minutes on a loaded machine
        pids = [own.proc.pid, *descendants(own.proc.pid)]
        assert no_secret_in_arguments(pids, [own.password, own.token])
        assert own.api("GET", "/api/current-user/whoami")["email"] == own.email  # the token works
        session = requests.Session()
        session.get(f"{own.url}/user/login/", timeout=30)
        r = session.post(
            f"{own.url}/user/login/",
            data={
                "email": own.email,
                "password": own.password,
                "csrfmiddlewaretoken": session.cookies.get("csrftoken"),
            },
            headers={"Referer": f"{own.url}/user/login/"},
            timeout=30,
        )
        assert r.ok and "/user/login" not in r.url, "the admin logs in with the password given in the environment"
    finally:
        if own is not label_studio:
            own.stop()


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
