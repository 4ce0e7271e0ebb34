"""Starting real services for tests: a private Redis server, `prefloop` processes. Each helper
waits until the service answers and returns something that stops it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
PREFLOOP = [sys.executable, "-m", "cli"]


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the service is still starting
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last_exc})")


class RedisServer:
    """A private redis-server on its own port, keeping nothing on disk (or, with `data_dir`, an
    append-only file there, so a stop and start keeps the data, as a deployed Redis does)."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None):
        self.port = port or free_port()
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        from cli.localstack import redis_argv

        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            redis_argv(self.port, self.data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        import redis

        wait_until(lambda: redis.Redis(port=self.port).ping(), 10, f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def prefloop_env(**settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({k.upper(): str(v) for k, v in settings.items()})
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # A `prefloop up` run in the checkout leaves .prefloop/env, which commands started there read when
    # no stack setting is set (cli/main.py): tests name their own services, so point that elsewhere.
    env.setdefault("PREFLOOP_STATE_DIR", str(REPO / ".no-local-stack-in-tests"))
    env["PYTHONPATH"] = str(REPO)
    return env


class Process:
    """A `prefloop` subcommand in its own process, with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> Process:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.log, "ab")
        self.proc = subprocess.Popen(
            PREFLOOP + self.args,
            env=self.env,
            cwd=REPO,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a worker and its work-horse)."""
        if self.alive():
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)

    def kill_tree(self) -> None:
        """SIGKILL the process and every descendant, also those in their own process group (an RQ
        work-horse): what a crash, the OOM killer or `docker kill` does to a whole worker."""
        if not self.alive():
            return
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(30)
        # The work-horse is not our child: its SIGKILL takes effect in its own time, and on a loaded
        # machine it still ran when the test went on (recovery then rightly left its job alone).
        from worker.recovery import pid_alive  # the product's own "does it still run" (a zombie does not)

        wait_until(lambda: not any(pid_alive(pid) for pid in pids), 30, f"killed processes {pids} to end")

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def descendants(pid: int) -> list[int]:
    """Pids of all processes below `pid` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        out += children
        todo += children
    return out


def start_server(env: dict[str, str], port: int, log: Path, timeout: float = 30) -> Process:
    proc = Process(["serve"], dict(env, PORT=str(port)), log).start()
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok, timeout, "prefloop serve")
    return proc
