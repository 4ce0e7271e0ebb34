"""`prefloop doctor`: what is running, what each part reaches, which project is connected with which
webhook, and what to fix, in plain words; exit 1 when something is wrong (2: the settings themselves).

It reads the same settings as every command (the environment, or the stack `prefloop up` runs:
cli/main.py) and only looks: it changes nothing. Checks, in order:
- Redis at REDIS_URL answers, and RQ workers listen on prefloop's queues (jobs wait forever otherwise);
- the backend answers BACKEND_URL/health (the URL Label Studio is given, so seen from here it may be
  unreachable and still fine: reported as a warning when Label Studio says it is connected);
- MODEL_DIR exists and is writable (versions are published there), and BASE_MODEL can be loaded
  offline (a local directory with config.json, or the Hugging Face cache);
- Label Studio at LABEL_STUDIO_URL accepts LABEL_STUDIO_API_KEY;
- for each project (PROJECTS, --project, or the one titled PROJECT_TITLE): the ML backend connected
  at BACKEND_URL and Label Studio's own view of it, the webhook to BACKEND_URL/webhook (active, and
  carrying X-Prefloop-Webhook-Secret when WEBHOOK_SECRET is set), empty annotations refused, the
  version it serves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefloop.labelstudio import LabelStudioClient
    from prefloop.settings import Settings

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass
class Check:
    part: str
    status: str
    what: str
    fix: str = ""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="say what runs, what reaches what, which project and webhook, and what to fix")
    p.add_argument(
        "--project",
        type=int,
        action="append",
        help="check this project (repeatable; default: PROJECTS or the project titled PROJECT_TITLE)",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prefloop.errors import SettingsError
    from prefloop.settings import Settings

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"prefloop doctor: the settings are wrong, nothing else was checked: {exc}", file=sys.stderr)
        return 2
    checks = diagnose(settings, args.project or list(settings.projects))
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        print("\n".join(report(checks)))
    return 1 if any(c.status == FAIL for c in checks) else 0


def report(checks: list[Check]) -> list[str]:
    width = max(len(c.part) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status:<4}  {c.part:<{width}}  {c.what}")
        if c.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    problems = sum(c.status == FAIL for c in checks)
    warnings = sum(c.status == WARN for c in checks)
    lines.append(
        "everything needed is running and reachable"
        if not problems
        else f"{problems} problem{'s' if problems > 1 else ''} to fix (see 'fix:' above)"
    )
    if warnings:
        lines[-1] += f"; {warnings} warning{'s' if warnings > 1 else ''}"
    return lines


def diagnose(settings: Settings, project_ids: list[int]) -> list[Check]:
    from cli import localstack
    from prefloop.redact import redact_url

    source = localstack.applied_from
    checks = [
        Check("settings", OK, f"from {source} (the stack `prefloop up` runs)" if source else "from the environment")
    ]
    checks += _queue(settings)
    backend = _backend(settings)
    checks.append(backend)
    checks.append(_model_dir(settings.model_dir))
    checks.append(_model(settings.base_model))
    ls_check, client = _label_studio(settings, redact_url(settings.label_studio_url))
    checks.append(ls_check)
    if client is not None:
        checks += _projects(settings, client, project_ids)
    if backend.status == FAIL and any(c.part.endswith(" backend") and c.status == OK for c in checks):
        backend.status = WARN  # Label Studio reaches it (it checks /health when listing backends): it runs
        backend.what += ", but Label Studio reaches it: it runs, this machine just cannot reach BACKEND_URL"
        backend.fix = ""
    return checks


def _queue(settings: Settings) -> list[Check]:
    from rq import Worker

    from prefloop.queue import JobQueue
    from prefloop.redact import redact_url

    url = redact_url(settings.redis_url)
    queue = JobQueue(settings)
    if not queue.ping():
        return [
            Check(
                "Redis",
                FAIL,
                f"{url} does not answer",
                "start Redis, or set REDIS_URL to the Redis of your deployment (`prefloop up` runs one on 6390)",
            )
        ]
    names = set(queue.queue_names())
    workers = [w for w in Worker.all(connection=queue.connection) if names & set(w.queue_names())]
    worker = (
        Check(
            "worker",
            OK,
            f"{len(workers)} worker(s) listening on {', '.join(sorted(names))}: "
            + ", ".join(f"{w.name} ({w.get_state()})" for w in workers),
        )
        if workers
        else Check(
            "worker",
            FAIL,
            f"no worker listens on {', '.join(sorted(names))}: generation and training jobs wait in the queue",
            "start `prefloop worker` with the same REDIS_URL and QUEUE_PREFIX",
        )
    )
    return [Check("Redis", OK, f"{url} answers"), worker]


def _backend(settings: Settings) -> Check:
    import requests

    url = settings.backend_url.rstrip("/")
    try:
        r = requests.get(f"{url}/health", timeout=3)
        if r.ok:
            return Check("backend", OK, f"{url}/health answers: {r.text.strip()[:80]}")
        what = f"{url}/health answered {r.status_code}"
    except requests.RequestException as exc:
        what = f"{url}/health does not answer ({type(exc).__name__})"
    return Check(
        "backend",
        FAIL,
        what,
        "start `prefloop serve`; BACKEND_URL must be the backend's URL as Label Studio reaches it",
    )


def _model_dir(model_dir: Path) -> Check:
    if model_dir.exists() and not model_dir.is_dir():
        return Check(
            "MODEL_DIR",
            FAIL,
            f"{model_dir} is a file, not a directory: no version can be published",
            "set MODEL_DIR to a directory the backend and the worker share",
        )
    if not model_dir.exists():
        parent = next((p for p in model_dir.parents if p.exists()), Path("/"))
        ok = parent.is_dir() and os.access(parent, os.W_OK)
        return Check(
            "MODEL_DIR",
            OK if ok else FAIL,
            f"{model_dir} does not exist yet (made at the first version)",
            "" if ok else f"make {model_dir} writable by the worker, or set MODEL_DIR",
        )
    if not os.access(model_dir, os.W_OK):
        return Check(
            "MODEL_DIR",
            FAIL,
            f"{model_dir} is not writable: no version can be published",
            f"give the worker's user write access to {model_dir}, or set MODEL_DIR",
        )
    projects = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    return Check(
        "MODEL_DIR", OK, f"{model_dir} is writable; versions for project(s) {', '.join(projects) or 'none yet'}"
    )


def _model(base_model: str) -> Check:
    path = Path(base_model)
    if path.is_dir():
        if not (path / "config.json").is_file():
            return Check(
                "model",
                FAIL,
                f"BASE_MODEL {path} is a directory without config.json",
                "point BASE_MODEL at a saved model (`save_pretrained`) or a hub name",
            )
        note = path / "prefloop-note.txt"
        if note.is_file():
            return Check("model", WARN, f"{path}: {note.read_text().strip()}")
        return Check("model", OK, f"BASE_MODEL {path} (a local directory)")
    from cli.commands.download_model import _cached

    if _cached(base_model, None) is not None:
        return Check("model", OK, f"BASE_MODEL {base_model} is in the Hugging Face cache")
    return Check(
        "model",
        FAIL,
        f"BASE_MODEL {base_model} is neither a directory nor in the Hugging Face cache",
        "run `prefloop download-model` where the model hub is reachable, or set BASE_MODEL to a directory",
    )


def _label_studio(settings: Settings, shown_url: str) -> tuple[Check, LabelStudioClient | None]:
    from prefloop.errors import PrefloopError
    from prefloop.labelstudio import LabelStudioClient

    try:
        client = LabelStudioClient(settings, retries=0, timeout=5)
        me = client.whoami()
    except PrefloopError as exc:
        return Check(
            "Label Studio",
            FAIL,
            str(exc),
            "start Label Studio, or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (Account & Settings > access token)",
        ), None
    return Check("Label Studio", OK, f"{shown_url} accepts the token (user {me.get('email')})"), client


def _projects(settings: Settings, client: LabelStudioClient, project_ids: list[int]) -> list[Check]:
    from prefloop.errors import PrefloopError

    try:
        if project_ids:
            projects = [client.get_project(pid) for pid in project_ids]
        else:
            projects = sorted(client.list_projects(title=settings.project_title), key=lambda p: p["id"])[:1]
    except PrefloopError as exc:
        return [Check("project", FAIL, str(exc), "check PROJECTS / --project")]
    if not projects:
        return [
            Check(
                "project",
                FAIL,
                f"no project titled {settings.project_title!r} in Label Studio",
                "run `prefloop init` (creates and connects it), or set PROJECTS to the project ids",
            )
        ]
    checks = []
    for project in projects:
        try:
            checks += _project(settings, client, project)
        except PrefloopError as exc:
            checks.append(Check(f"project {project['id']}", FAIL, str(exc)))
    return checks


def _project(settings: Settings, client: LabelStudioClient, project: dict[str, Any]) -> list[Check]:
    from prefloop.artifacts import ArtifactStore
    from prefloop.labelstudio import WEBHOOK_SECRET_HEADER

    pid, part = project["id"], f"project {project['id']}"
    url = settings.backend_url.rstrip("/")
    store = ArtifactStore(settings.model_dir)
    checks = [
        Check(
            part,
            OK,
            f"{project.get('title')!r}: {project.get('task_number') or 0} tasks, serves {store.model_version(pid)}",
        )
    ]
    backends = client.list_ml_backends(pid)
    ours = [b for b in backends if (b.get("url") or "").rstrip("/") == url]
    if not ours:
        others = ", ".join(b.get("url") or "?" for b in backends) or "none"
        checks.append(
            Check(
                f"{part} backend",
                FAIL,
                f"{url} is not connected (connected: {others})",
                "run `prefloop init` with this BACKEND_URL",
            )
        )
    else:
        state = {"CO": "connected", "ER": "in error", "DI": "disconnected", "TR": "training"}.get(
            ours[0].get("state") or "", ours[0].get("state") or "unknown"
        )
        checks.append(
            Check(
                f"{part} backend",
                OK if state in ("connected", "training") else FAIL,
                f"{url} is connected; Label Studio sees it {state}",
                ""
                if state in ("connected", "training")
                else "Label Studio cannot reach BACKEND_URL: check the address from Label Studio's side",
            )
        )
    hooks = [h for h in client.list_webhooks(pid) if (h.get("url") or "").rstrip("/") == f"{url}/webhook"]
    if not hooks:
        checks.append(
            Check(
                f"{part} webhook",
                FAIL,
                f"no webhook to {url}/webhook: annotations never reach prefloop",
                "reconnect the backend (`prefloop init`); Label Studio also needs ML_BLOCK_LOCAL_IP=false "
                "and SSRF_PROTECTION_ENABLED=false for a backend on a private address",
            )
        )
    else:
        hook = hooks[0]
        headers = hook.get("headers") or {}
        secret = getattr(settings, "webhook_secret", "")
        active = hook.get("is_active", True)
        what = f"{url}/webhook ({'active' if active else 'INACTIVE'})"
        status, fix = (OK, "") if active else (FAIL, "activate it in the project's Webhooks settings")
        if secret and headers.get(WEBHOOK_SECRET_HEADER) != secret:
            status, fix = FAIL, f"run `prefloop init`: it puts {WEBHOOK_SECRET_HEADER} (WEBHOOK_SECRET) on the webhook"
            what += f" without the right {WEBHOOK_SECRET_HEADER}: /webhook refuses its events"
        elif secret:
            what += f" with {WEBHOOK_SECRET_HEADER}"
        else:
            what += "; /webhook is open (WEBHOOK_SECRET is not set)"
        checks.append(Check(f"{part} webhook", status, what, fix))
    if project.get("enable_empty_annotation", True):
        checks.append(
            Check(
                f"{part} annotations",
                WARN,
                "empty annotations are allowed: unselecting the pre-selected answer saves nothing",
                "run `prefloop init` (it refuses empty annotations)",
            )
        )
    return checks
