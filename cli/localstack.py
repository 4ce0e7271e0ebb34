"""Running prefloop's services as local processes, without Docker: Redis, Label Studio in its own
virtualenv, `prefloop serve` and `prefloop worker`. `prefloop up` uses this, and so does the test
harness (tests/support/labelstudio_server.py), so the settings Label Studio needs live in one place.

Label Studio settings (ARCHITECTURE.md, "Label Studio protocol"): legacy tokens enabled so the
token given at first start works; ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false so it
reaches a backend and sends webhooks on 127.0.0.1; no calls out to the internet.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from prefloop.errors import PrefloopError

REPO = Path(__file__).resolve().parent.parent
LABEL_STUDIO_SPEC = "label-studio==1.23.2"
INSTALL_SCRIPT = REPO / "scripts" / "install-label-studio.sh"


class ServiceError(PrefloopError):
    """A local service is missing, cannot start, or died; the message says which and what to do."""


# --- Label Studio --------------------------------------------------------------------------------
def label_studio_bin(venv: Path | None = None) -> Path:
    return (venv or REPO / ".venv-ls") / "bin" / "label-studio"


def install_label_studio(
    venv: Path | None = None, log: Path | None = None, script: Path = INSTALL_SCRIPT, say: Callable[[str], None] = print
) -> Path:
    """Install Label Studio into its own virtualenv with scripts/install-label-studio.sh (the same
    script `scripts/setup.sh --test` runs). Returns the `label-studio` executable.

    pip's own output (progress, and whatever notices the machine's package index adds, hundreds of
    lines) goes to `log`; the terminal gets one line before, one after, and on failure the lines
    that say what went wrong."""
    venv = venv or REPO / ".venv-ls"
    exe = label_studio_bin(venv)
    if exe.exists():
        return exe
    if not script.exists():
        raise ServiceError(
            f"Label Studio is not installed at {venv} and {script} is missing: run "
            f"`python3 -m venv {venv} && {venv}/bin/pip install {LABEL_STUDIO_SPEC}`"
        )
    log = log or venv.parent / "install-label-studio.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    say(f"installing {LABEL_STUDIO_SPEC} into {venv} (once, about 2 minutes; pip's output goes to {log})")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    with open(log, "wb") as fh:
        r = subprocess.run(["bash", str(script), str(venv)], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if r.returncode != 0 or not exe.exists():
        raise ServiceError(
            f"installing {LABEL_STUDIO_SPEC} into {venv} failed (exit {r.returncode}):\n"
            f"{_errors(log)}\nthe whole pip output is in {log}"
        )
    say(f"installed {LABEL_STUDIO_SPEC} into {venv}")
    return exe


def _errors(log: Path, keep: int = 15) -> str:
    """The lines of an install log that say what failed (pip's ERROR lines and the traceback's end),
    not its warnings and notices."""
    lines = log.read_text(errors="replace").splitlines()
    wanted = [line for line in lines if line.lstrip().startswith(("ERROR", "error:", "×", "╰─>")) or "Error" in line]
    return "\n".join((wanted or lines)[-keep:])


def label_studio_env(
    data_dir: Path, base: dict[str, str] | None = None, *, username: str = "", password: str = "", token: str = ""
) -> dict[str, str]:
    """Label Studio's environment. The admin login and API token go here, never into its arguments:
    any local user reads a process's arguments (`ps`, /proc/<pid>/cmdline), while its environment
    (/proc/<pid>/environ) is readable only by its owner. `label-studio start` reads them as
    LABEL_STUDIO_USERNAME, LABEL_STUDIO_PASSWORD and LABEL_STUDIO_USER_TOKEN (its server.py), creates
    that user and token on the first start and keeps them on later starts."""
    env = dict(os.environ if base is None else base)
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        DJANGO_DB="sqlite",
    )
    if username:
        env.update(LABEL_STUDIO_USERNAME=username, LABEL_STUDIO_PASSWORD=password, LABEL_STUDIO_USER_TOKEN=token)
    env.pop("PYTHONPATH", None)  # its own virtualenv: nothing of prefloop's environment
    return env


def label_studio_argv(exe: Path, port: int) -> list[str]:
    """`--internal-host` is the bind address (`--host` is only the URL LS puts in links). No secret
    here: the login and token travel in the environment (`label_studio_env`)."""
    url = f"http://127.0.0.1:{port}"
    return [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port), "--host", url]


# --- Redis ---------------------------------------------------------------------------------------
def redis_server_bin() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        raise ServiceError(
            "redis-server is not installed: run `sudo apt-get install -y redis-server` (bash scripts/setup.sh does it)"
        )
    return exe


def redis_argv(port: int, data_dir: Path | None = None) -> list[str]:
    """A Redis on 127.0.0.1:port; with `data_dir`, an append-only file there so a restart keeps the
    queues and the projects prefloop serves."""
    persist = ["--appendonly", "no"]
    if data_dir is not None:
        persist = ["--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec"]
    return [redis_server_bin(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persist]


# --- processes -----------------------------------------------------------------------------------
def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    """In the child before exec: its own session (Ctrl-C reaches only `prefloop up`, which stops the
    children in order), and SIGTERM when the parent dies, so nothing is left behind by a kill -9."""
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: children outlive a killed parent; Ctrl-C still stops them


@dataclass
class Service:
    """One child process with its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path = REPO
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Service:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the process group; after `timeout` a second SIGTERM (RQ's cold shutdown: the
        worker kills its work-horse, which runs in a process group of its own), then SIGKILL."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if not self.alive():
                return
            proc = cast("subprocess.Popen[bytes]", self.proc)  # alive() held: it was started
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                return

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def wait_ready(self, ready: Callable[[], bool], timeout: float, hint: str = "") -> None:
        """Poll `ready` (which must not raise) until it holds; a service that exits or stays silent
        raises with its log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                proc = cast("subprocess.Popen[bytes]", self.proc)  # called after start()
                raise ServiceError(
                    f"{self.name} exited with code {proc.returncode}{hint}; last lines of {self.log}:\n{self.tail()}"
                )
            if ready():
                return
            time.sleep(0.5)
        raise ServiceError(
            f"{self.name} did not become ready within {timeout:.0f}s{hint}; last lines of {self.log}:\n{self.tail()}"
        )


def prefloop_argv(*args: str) -> list[str]:
    """A `prefloop` subcommand run with this interpreter (the project's virtualenv)."""
    return [sys.executable, "-m", "cli", *args]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    import requests

    try:
        return requests.get(url, timeout=timeout).ok
    except requests.RequestException:
        return False


# --- where the commands find a local stack ------------------------------------------------------
STACK_KEYS = (
    "LABEL_STUDIO_URL",
    "LABEL_STUDIO_API_KEY",
    "REDIS_URL",
    "MODEL_DIR",
    "BACKEND_URL",
    "BASE_MODEL",
    "WEBHOOK_SECRET",
)
"""What `prefloop up` writes to `<state dir>/env` and every other command reads from there; the file
is read only when none of these is set in the environment."""
STACK_EXTRA = ("PROJECT_TITLE",)
"""Also written and read (`prefloop doctor` finds the demo project by its title), but a user's own
PROJECT_TITLE does not stop the file from being read."""
STATE_DIR_VAR = "PREFLOOP_STATE_DIR"
applied_from: Path | None = None
"""The env file `apply_stack_env` read in this process, if any (`prefloop doctor` says so)."""


def stack_env_file(state_dir: Path) -> Path:
    return state_dir / "env"


def write_stack_env(state_dir: Path, values: dict[str, str]) -> Path:
    """`KEY='value'` lines (shell syntax, so `set -a; . .prefloop/env` works too), readable only by
    the owner: the file holds the Label Studio token."""
    import shlex

    path = stack_env_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        "# written by `prefloop up`: the settings of the stack it runs; other prefloop commands\n"
        '# started in this directory read them (or: eval "$(prefloop env)")\n'
        + "".join(f"{key}={shlex.quote(str(values[key]))}\n" for key in STACK_KEYS + STACK_EXTRA if values.get(key))
    )
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return path


def read_stack_env(path: Path) -> dict[str, str]:
    import shlex

    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key in STACK_KEYS + STACK_EXTRA:
            out[key] = "".join(shlex.split(value)) if value else ""
    return out


def find_stack_env(environ: Mapping[str, str], cwd: Path | None = None) -> Path | None:
    """The env file of the stack `prefloop up` runs: $PREFLOOP_STATE_DIR/env, else ./.prefloop/env."""
    state_dir = environ.get(STATE_DIR_VAR)
    path = stack_env_file(Path(state_dir) if state_dir else (cwd or Path.cwd()) / ".prefloop")
    return path if path.is_file() else None


def apply_stack_env(environ: MutableMapping[str, str], cwd: Path | None = None) -> Path | None:
    """Fill `environ` from the local stack's env file, only when none of its settings is set already
    (whoever sets one configures by hand, and a mix of two deployments would be worse than either).
    Returns the file used, or None."""
    if any(key in environ for key in STACK_KEYS):
        return None
    global applied_from
    path = find_stack_env(environ, cwd)
    if path is None:
        return None
    environ.update({k: v for k, v in read_stack_env(path).items() if k in STACK_KEYS or k not in environ})
    applied_from = path
    return path
