"""`prefloop serve`: the backend under gunicorn, honouring PORT, WORKERS and THREADS."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from prefloop.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the Label Studio ML backend (gunicorn, port $PORT, default 9090)")
    p.add_argument("--port", type=int, help="override PORT")
    p.add_argument("--dev", action="store_true", help="Flask's development server instead of gunicorn")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"port": args.port} if args.port else {}
    settings = Settings.from_env(**overrides)  # fail fast, naming the variable
    if args.dev:
        from backend.app import serve_app

        serve_app(settings).run(host=settings.host, port=settings.port, threaded=True)
        return 0
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if gunicorn is None:
        raise SystemExit("prefloop: gunicorn is not installed in this environment")
    env = dict(os.environ, PORT=str(settings.port))
    argv = [
        gunicorn,
        "backend.app:serve_app()",
        "--bind",
        f"{settings.host}:{settings.port}",
        "--workers",
        str(settings.workers),
        "--threads",
        str(settings.threads),
        "--worker-class",
        "gthread",
        # /predict on a large "Retrieve Predictions" may take most of Label Studio's 100 s.
        "--timeout",
        "120",
        "--graceful-timeout",
        "30",
        "--access-logfile",
        "-",
        "--log-level",
        settings.log_level.lower(),
        # No --preload: workers import the app themselves, so nothing touches CUDA before forking.
    ]
    os.execve(gunicorn, argv, env)
    return 0  # not reached
