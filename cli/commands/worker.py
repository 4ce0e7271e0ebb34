"""`prefloop worker`: an RQ worker on prefloop's queues (all of them unless --queue is given)."""

from __future__ import annotations

import argparse

from prefloop.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="run an RQ worker for generation, reward training and PPO")
    p.add_argument(
        "--queue", action="append", choices=["gpu", "default"], help="listen only on this queue (repeatable)"
    )
    p.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    p.add_argument("--simple", action="store_true", help="run jobs in this process instead of a forked work-horse")
    p.add_argument("--name", help="worker name (default: prefloop-<host>-<pid>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    from worker.main import run_worker

    run_worker(settings, queues=args.queue, burst=args.burst, simple=args.simple, name=args.name)
    return 0
