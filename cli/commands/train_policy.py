"""`prefloop train-policy --project ID --trainer NAME`: queue a policy run by hand (it runs on a worker).

NAME is ppo, dpo, grpo or rloo (default: POLICY_TRAINER); `--set KEY=VALUE` overrides that
trainer's knobs (`--knobs` lists them). Knobs are checked here, so a bad one queues nothing.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from prefloop.settings import POLICY_TRAINERS

    p = sub.add_parser("train-policy", help="queue a policy run (ppo, dpo, grpo or rloo) for a project")
    p.add_argument("--project", type=int, help="Label Studio project id (required unless --knobs)")
    p.add_argument("--trainer", choices=POLICY_TRAINERS, help="policy trainer (default: POLICY_TRAINER)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="override a knob of the trainer for this run, e.g. --set beta=0.2 (repeatable; see --knobs)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="run even if the reward model is below PPO_MIN_ACCURACY (ppo, grpo, rloo) or too few "
        "annotations changed since the last DPO policy (dpo)",
    )
    p.add_argument("--knobs", action="store_true", help="list the trainer's knobs with their defaults and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli.commands import print_knobs
    from prefloop.errors import InputError
    from prefloop.jobkinds import JobKind
    from prefloop.queue import JobQueue
    from prefloop.settings import Settings
    from worker.trainers import config_class

    settings = Settings.from_env()
    trainer = args.trainer or settings.policy_trainer
    knobs = config_class(trainer)
    if args.knobs:
        return print_knobs(knobs)
    if args.project is None:
        raise InputError("--project ID is required: the Label Studio project whose policy is trained")
    overrides = knobs.overrides_from_set(args.set)
    kwargs: dict[str, Any] = {"config": overrides} if overrides else {}
    if args.force:
        kwargs["force"] = True
    queued = JobQueue(settings).enqueue(
        JobKind.POLICY,
        args.project,
        rate_limited=False,
        trainer=trainer,
        reason=f"queued by hand (prefloop train-policy --trainer {trainer})",
        **kwargs,
    )
    state = "already waiting" if queued.coalesced else "queued"
    print(f"{trainer.upper()} for project {args.project}: {state} as job {queued.job_id}")
    return 0
