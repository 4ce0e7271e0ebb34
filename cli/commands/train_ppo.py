"""`prefloop train-ppo --project ID`: queue a PPO job by hand (it runs on a worker)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train-ppo", help="queue a PPO run for a project against its current reward model")
    p.add_argument("--project", type=int, help="Label Studio project id (required unless --knobs)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override a PPO knob for this run, e.g. --set steps=50 (repeatable; see --knobs)",
    )
    p.add_argument(
        "--force", action="store_true", help="run even if the reward model's eval accuracy is below PPO_MIN_ACCURACY"
    )
    p.add_argument("--knobs", action="store_true", help="list the PPO knobs with their defaults and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli.commands import print_knobs
    from prefloop.errors import InputError
    from prefloop.jobkinds import JobKind
    from prefloop.queue import JobQueue
    from prefloop.settings import Settings
    from worker.ppo.config import PPOConfig

    if args.knobs:
        return print_knobs(PPOConfig)
    if args.project is None:
        raise InputError("--project ID is required: the Label Studio project whose policy PPO trains")
    settings = Settings.from_env()
    overrides = PPOConfig.overrides_from_set(args.set)
    kwargs: dict[str, Any] = {"config": overrides} if overrides else {}
    if args.force:
        kwargs["force"] = True
    queued = JobQueue(settings).enqueue(
        JobKind.PPO, args.project, reason="queued by hand (prefloop train-ppo)", rate_limited=False, **kwargs
    )
    state = "already waiting" if queued.coalesced else "queued"
    print(f"PPO for project {args.project}: {state} as job {queued.job_id}")
    return 0
