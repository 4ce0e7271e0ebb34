"""`prefloop up`: the whole loop on one machine, without Docker.

Starts Redis, Label Studio (installed into `.venv-ls` first if missing), `prefloop serve` and
`prefloop worker` as child processes; creates a demo project with label_config/pairwise.xml and
connects the backend (the same code as `prefloop init`); imports sample prompts, which the worker
fills with answer pairs; prints where to log in, then watches until Ctrl-C, which stops everything
it started. Everything lives in a state directory (default `.prefloop/`): Redis's append-only
file, Label Studio's data, the model versions, the logs, `up.json` with the login, the token, the
project and the URLs, so running it again reuses all of it, and `env` with the settings every other
`prefloop` command started in this directory picks up (cli/main.py; `prefloop env` prints them for
other shells). No secret is passed as a process argument: Label Studio gets its login and token in
its environment (cli/localstack.py).

Offline it builds a tiny GPT-2 and says so; where the model hub is reachable it downloads BASE_MODEL
(`gpt2`) once, as an explicit step, and runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, cast

from cli.tinynote import TINY_NOTE, announce
from prefloop.errors import ModelNotFound, UnknownProject
from prefloop.settings import Settings

if TYPE_CHECKING:
    import subprocess
    from types import FrameType

    from cli.localstack import Service
    from prefloop.labelstudio import LabelStudioClient

DEMO_DEFAULTS = {"MIN_NEW_ANNOTATIONS": "5", "PROJECT_TITLE": "prefloop demo", "TOKENIZERS_PARALLELISM": "false"}
"""Applied where the environment does not set them: a demo retrains after a handful of choices."""
TINY_DEFAULTS = {"PPO_MIN_ACCURACY": "0", "MAX_NEW_TOKENS": "24"}
"""With the tiny random model no reward model reaches a real accuracy bar: run PPO anyway so the
versions visibly move."""
EMAIL = "admin@example.com"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "up", help="run the whole loop locally: Redis, Label Studio, backend and worker (Ctrl-C stops it)"
    )
    p.add_argument(
        "--state-dir", default=".prefloop", help="where data, models, logs and the login live (default .prefloop)"
    )
    p.add_argument("--ls-port", type=int, default=8080, help="Label Studio's port (default 8080)")
    p.add_argument("--port", type=int, default=9090, help="the backend's port (default 9090)")
    p.add_argument("--redis-port", type=int, default=6390, help="port of prefloop's own Redis (default 6390)")
    p.add_argument(
        "--label-studio-url", help="use this running Label Studio (with LABEL_STUDIO_API_KEY) instead of starting one"
    )
    p.add_argument(
        "--tiny", action="store_true", help="run on a tiny GPT-2 built locally, even where the model hub is reachable"
    )
    p.add_argument(
        "--prompts",
        default=str(Path(__file__).resolve().parents[2] / "examples" / "prompts.jsonl"),
        help="sample prompts imported into a new demo project (default examples/prompts.jsonl)",
    )
    p.set_defaults(func=run)


def say(message: str) -> None:
    print(f"prefloop up: {message}", flush=True)


@dataclass
class State:
    """What a second `prefloop up` reuses (up.json, readable only by its owner)."""

    email: str = EMAIL
    password: str = ""
    token: str = ""
    project_id: int | None = None
    base_model: str | None = None
    urls: dict[str, str] = field(default_factory=dict)  # label_studio, backend, status, redis, model_dir
    webhook_secret: str = ""  # WEBHOOK_SECRET of the backend, also set on the project's webhook

    @classmethod
    def load(cls, path: Path) -> State:
        data = json.loads(path.read_text()) if path.exists() else {}
        state = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        state.password = state.password or secrets.token_urlsafe(12)
        state.token = state.token or secrets.token_hex(20)
        state.webhook_secret = state.webhook_secret or secrets.token_urlsafe(24)
        return state

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.chmod(0o600)
        os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    from cli.localstack import port_free

    state_dir = Path(args.state_dir).resolve()
    state = State.load(state_dir / "up.json")
    own_ls = not args.label_studio_url
    if not own_ls and not os.environ.get("LABEL_STUDIO_API_KEY"):
        say("--label-studio-url needs LABEL_STUDIO_API_KEY (a token of that Label Studio) in the environment")
        return 2
    wanted = {"Redis": args.redis_port, "backend": args.port, **({"Label Studio": args.ls_port} if own_ls else {})}
    for name, port in wanted.items():
        if not port_free(port):
            say(
                f"port {port} for {name} is in use (another `prefloop up`?): stop that, or pick another port "
                f"with --{'redis-' if name == 'Redis' else 'ls-' if name == 'Label Studio' else ''}port"
            )
            return 1
    state.base_model = choose_model(args, state, state_dir)
    state.save(state_dir / "up.json")
    up = LocalLoop(args, state, state_dir)
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a shell may start it with Ctrl-C ignored
        signal.signal(sig, _interrupt)
    try:
        up.start()
        up.watch()
    except KeyboardInterrupt:
        say("stopping (Ctrl-C)")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        up.stop()
        say(f"everything stopped; data kept in {state_dir} (run `prefloop up` again to continue)")
    return 1  # watch() only returns when a service died


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


# --- the model ------------------------------------------------------------------------------------
def choose_model(args: argparse.Namespace, state: State, state_dir: Path) -> str:
    """BASE_MODEL if it can be had (a local directory, the cache, or one download), else a tiny GPT-2
    built locally. A second start keeps the first start's choice (versions trained on one base
    cannot continue on another) unless --tiny or BASE_MODEL says otherwise."""
    tiny_dir = state_dir / "tiny-gpt2"
    name = Settings.from_env().base_model
    if state.base_model and not args.tiny and "BASE_MODEL" not in os.environ:
        say(f"model: {state.base_model} (chosen at the first start; remove {state_dir} to start over)")
        return str(ensure_tiny(tiny_dir)) if state.base_model == str(tiny_dir) else state.base_model
    if not args.tiny:
        if Path(name).is_dir():
            say(f"model: {name} (a local directory)")
            return name
        from cli.commands.download_model import _cached, download, verify

        if _cached(name, None) is not None:
            say(f"model: {name} (from the Hugging Face cache)")
            return name
        try:
            if not hub_reachable():
                raise ModelNotFound("the model hub (huggingface.co) is unreachable from this machine")
            say(f"model: {name} from the model hub, downloaded once into the HF cache, then used offline")
            download(name)
            verify(name)  # loads its tokenizer through prefloop.models, as the services will
            return name
        except ModelNotFound as exc:
            say(f"OFFLINE: cannot use {name} ({exc}).")
    say(
        f"model: a tiny 2-layer GPT-2 built locally in {tiny_dir}. The loop works, but its answers are gibberish. "
        f"Where the model hub is reachable, remove {state_dir} and start again to run on {name}."
    )
    return str(ensure_tiny(tiny_dir))


def ensure_tiny(tiny_dir: Path) -> Path:
    if not (tiny_dir / "config.json").exists():
        from cli.tinymodel import build_tiny_gpt2

        build_tiny_gpt2(tiny_dir)
    (tiny_dir / "prefloop-note.txt").write_text(TINY_NOTE + "\n")  # the status page shows it
    return tiny_dir


def hub_reachable(timeout: float = 3.0) -> bool:
    """A cached model needs no network: `download` finds it first. This only decides whether trying
    the hub is worth its retries (a minute when the name does not resolve)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# --- the processes --------------------------------------------------------------------------------
class LocalLoop:
    def __init__(self, args: argparse.Namespace, state: State, state_dir: Path) -> None:
        self.args, self.state, self.dir = args, state, state_dir
        self.services: list[Service] = []
        self.ls_url = (args.label_studio_url or f"http://127.0.0.1:{args.ls_port}").rstrip("/")
        self.token = os.environ.get("LABEL_STUDIO_API_KEY", "") if args.label_studio_url else state.token
        self.backend_url = f"http://127.0.0.1:{args.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in {**DEMO_DEFAULTS, **(TINY_DEFAULTS if self.tiny else {})}.items():
            env.setdefault(key, value)
        env.setdefault("WEBHOOK_SECRET", self.state.webhook_secret)  # /webhook refuses events without it
        env.update(
            REDIS_URL=f"redis://127.0.0.1:{self.args.redis_port}/0",
            LABEL_STUDIO_URL=self.ls_url,
            LABEL_STUDIO_API_KEY=self.token,
            MODEL_DIR=str(self.dir / "models"),
            BASE_MODEL=cast(str, self.state.base_model),  # chosen (choose_model) before the loop starts
            PORT=str(self.args.port),
            HOST="127.0.0.1",
            BACKEND_URL=self.backend_url,
            HF_HUB_OFFLINE="1",
        )
        return env

    @property
    def tiny(self) -> bool:
        return self.state.base_model == str(self.dir / "tiny-gpt2")

    def start(self) -> None:
        from cli import localstack as ls

        env, logs = self.env(), self.dir / "logs"
        (self.dir / "redis").mkdir(parents=True, exist_ok=True)
        redis = self._start(
            ls.Service("Redis", ls.redis_argv(self.args.redis_port, self.dir / "redis"), env, logs / "redis.log")
        )
        redis.wait_ready(lambda: _redis_ok(env["REDIS_URL"]), 20)
        if not self.args.label_studio_url:
            exe = ls.install_label_studio(log=logs / "install-label-studio.log", say=say)
            say(f"starting Label Studio on {self.ls_url} (the first start takes about a minute)")
            ls_env = ls.label_studio_env(
                self.dir / "label-studio",
                username=self.state.email,
                password=self.state.password,
                token=self.state.token,
            )
            label_studio = self._start(
                ls.Service(
                    "Label Studio", ls.label_studio_argv(exe, self.args.ls_port), ls_env, logs / "label-studio.log"
                )
            )
        backend = self._start(ls.Service("backend", ls.prefloop_argv("serve"), env, logs / "backend.log"))
        self._start(ls.Service("worker", ls.prefloop_argv("worker"), env, logs / "worker.log"))
        backend.wait_ready(lambda: ls.http_ok(f"{self.backend_url}/health"), 60)
        if not self.args.label_studio_url:
            label_studio.wait_ready(lambda: ls.http_ok(f"{self.ls_url}/health"), 300)
        self.project_id = self.connect_project()
        self.state.project_id = self.project_id
        self.state.urls = {
            "label_studio": self.ls_url,
            "backend": self.backend_url,
            "redis": env["REDIS_URL"],
            "status": f"{self.backend_url}/status?project={self.project_id}",
            "annotate": f"{self.ls_url}/projects/{self.project_id}/data",
            "model_dir": env["MODEL_DIR"],
        }
        self.state.save(self.dir / "up.json")
        ls.write_stack_env(self.dir, env)
        self.print_summary()

    def _start(self, service: Service) -> Service:
        self.services.append(service.start())
        return service

    def connect_project(self) -> int:
        """`prefloop init`'s first start (find or create the project, connect the backend), then the
        sample prompts when the project has no task yet."""
        from cli.commands.init import first_start
        from prefloop.labelstudio import LabelStudioClient

        settings = Settings.from_env(self.env())
        client = LabelStudioClient(settings)
        try:
            pinned = replace(settings, projects=(self.state.project_id,)) if self.state.project_id else settings
            result = first_start(pinned, wait=60, client=client)
        except UnknownProject:  # deleted in Label Studio since the last start: make a new one
            result = first_start(settings, wait=60, client=client)
        project = result.projects[0]
        say(
            f"project {project.title!r} (id {project.id}) {'created' if project.created else 'found'}; backend "
            f"{'connected' if project.connected else 'already connected'}"
        )
        announce(client, project.id, self.tiny)  # the note on every task, or gone again on a real model
        if not client.get_project(project.id).get("task_number"):
            self.import_samples(client, project.id)
        return project.id

    def import_samples(self, client: LabelStudioClient, project_id: int) -> None:
        """Prompt-only tasks (answer fields present and empty, as Label Studio's import check wants):
        Label Studio sends TASKS_CREATED and the worker fills both answers."""
        from prefloop.label_config import answer_slots, parse_label_config
        from prefloop.prompts import read_prompts

        config = parse_label_config(client.get_label_config(project_id))
        tasks = [{"data": {**r.task_data(config), **answer_slots(config)}} for r in read_prompts(self.args.prompts)]
        client.import_tasks(project_id, tasks)
        say(
            f"imported {len(tasks)} sample prompts from {self.args.prompts}; the worker is writing two answers for each"
        )

    def print_summary(self) -> None:
        # Exactly the address Label Studio was started with: under another name (localhost) its
        # pages redirect in a loop.
        lines = [
            "",
            f"  Label Studio   {self.ls_url}/projects/{self.project_id}/data",
        ]
        if not self.args.label_studio_url:
            lines.append(f"  log in as      {self.state.email} / {self.state.password}")
        lines += [
            f"  status page    {self.backend_url}/status?project={self.project_id}",
            f"  logs           {self.dir / 'logs'}",
            f"  model          {self.state.base_model}{'  (tiny offline model)' if self.tiny else ''}",
        ]
        if self.tiny:
            lines.append(
                "                 random weights, no model hub: the answers are gibberish, as expected "
                "(annotators read why atop every task)"
            )
        here = Path.cwd().resolve() / ".prefloop" == self.dir
        first = "" if here else f'; elsewhere first run: eval "$(prefloop env --state-dir {self.dir})"'
        lines += [
            "",
            f"  The command line finds this stack (settings in {self.dir / 'env'}{first}):",
            "    prefloop doctor                     what runs, what reaches what, what to fix",
            f"    prefloop jobs --project {self.project_id}           generation, reward and PPO jobs",
            f"    prefloop versions --project {self.project_id}       reward-model and policy versions",
            "",
            "  Pick the better answer of each pair and submit; every few choices the reward model retrains,",
            "  then PPO updates the policy. Ctrl-C stops everything; `prefloop up` again continues.",
            "",
        ]
        print("\n".join(lines), flush=True)

    def watch(self, every: float = 2.0) -> None:
        """Report each new serving version; return when a service dies (its log tail says why)."""
        from prefloop.artifacts import ArtifactStore

        store, last = ArtifactStore(self.dir / "models"), None
        while True:
            for service in self.services:
                if not service.alive():
                    proc = cast("subprocess.Popen[bytes]", service.proc)  # every service in the list was started
                    say(
                        f"{service.name} exited with code {proc.returncode}; "
                        f"last lines of {service.log}:\n{service.tail()}"
                    )
                    return
            version = store.model_version(self.project_id)
            if version != last:
                say(f"project {self.project_id} serves {version}")
                last = version
            time.sleep(every)

    def stop(self) -> None:
        for service in reversed(self.services):  # worker, backend, Label Studio, Redis
            if service.alive():
                say(
                    f"stopping {service.name}"
                    + (" (it gets a minute to finish a running job)" if service.name == "worker" else "")
                )
                service.stop(timeout=60 if service.name == "worker" else 30)


def _redis_ok(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False
