"""`prefloop up`, the README's main command: everything it starts, the demo project it makes, what it
prints, Ctrl-C, and a second run that reuses what is there. It runs against the session's Label
Studio (--label-studio-url); starting Label Studio itself goes through the same code
(cli/localstack.py) as the `label_studio` fixture."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import uuid

import pytest
import requests

from cli.localstack import port_free
from tests.e2e.conftest import wait_filled
from tests.support.services import PREFLOOP, REPO, descendants, free_port, prefloop_env, wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
SAMPLES = sum(1 for line in (REPO / "examples" / "prompts.jsonl").read_text().splitlines() if line.strip())


class Up:
    """`prefloop up` in its own process, its output collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(PREFLOOP + ["up", *args], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> str:
        try:
            wait_until(lambda: text in self.output or self.proc.poll() is not None, timeout, f"{text!r} from prefloop up")
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
        label_studio, tmp_path, up_env):
    """Offline it says so and runs the tiny model; it creates and connects the demo project, imports
    the sample prompts (answered by its worker), prints the URLs; Ctrl-C stops every process it
    started; a second run finds the project, the model and the data again."""
    port, redis_port = free_port(), free_port()
    args = ["--state-dir", str(tmp_path / "state"), "--port", str(port), "--redis-port", str(redis_port),
            "--label-studio-url", label_studio.url]
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

    assert first.ctrl_c() == 0, first.output
    assert "everything stopped" in first.output
    assert port_free(port) and port_free(redis_port)
    time.sleep(1)
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid)], \
        "no process of prefloop up is left"

    second = Up(args, up_env)
    try:
        out = second.wait_for("Ctrl-C stops everything", 180)
        assert "chosen at the first start" in out
        assert f"(id {project}) found; backend already connected" in out and "sample prompts" not in out
        assert len(label_studio.tasks(project)) == SAMPLES
    finally:
        assert second.ctrl_c() == 0, second.output


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
