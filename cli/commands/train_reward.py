"""`prefloop train-reward --project ID`: queue a reward-model run now, like Label Studio's Train
button (it trains when at least one annotation changed since the newest version); `--force` trains
whatever changed. Optionally waits for it and shows its progress."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefloop.queue import JobQueue


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train-reward", help="queue a reward-model training run now (like the Train button)")
    p.add_argument("--project", type=int, help="Label Studio project id (required unless --knobs)")
    p.add_argument(
        "--force", action="store_true", help="train even when no annotation changed since the newest reward model"
    )
    p.add_argument("--wait", action="store_true", help="wait for the run and show its progress")
    p.add_argument("--timeout", type=float, default=4 * 3600, help="seconds to wait with --wait")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training knob for this run, e.g. --set num_train_epochs=2 (see --knobs)",
    )
    p.add_argument("--knobs", action="store_true", help="list the reward-training knobs with their defaults and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli.commands import print_knobs
    from prefloop.errors import InputError
    from prefloop.jobkinds import JobKind
    from prefloop.queue import JobQueue
    from prefloop.settings import Settings
    from worker.reward.config import RewardTrainConfig

    if args.knobs:
        return print_knobs(RewardTrainConfig)
    if args.project is None:
        raise InputError("--project ID is required: the Label Studio project whose reward model to train")
    settings = Settings.from_env()
    overrides = RewardTrainConfig.overrides_from_set(args.set)
    queue = JobQueue(settings)
    extra = {"config": overrides} if overrides else {}
    mode = {"force": True} if args.force else {"on_change": True}
    enqueued = queue.enqueue(
        JobKind.TRAIN_REWARD, args.project, reason="prefloop train-reward", rate_limited=False, **mode, **extra
    )
    what = "whatever changed" if args.force else "if any annotation changed"
    note = f" (joined the run already waiting; it will train {what})" if enqueued.coalesced else ""
    print(f"queued reward-model training for project {args.project}: job {enqueued.job_id}{note}")
    if not args.wait:
        return 0
    return wait_for(queue, enqueued.job_id, args.timeout)


def wait_for(queue: JobQueue, job_id: str, timeout: float) -> int:
    from prefloop.jobkinds import describe_job

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        job = queue.fetch(job_id)
        if job is None:
            print(f"job {job_id} no longer exists (expired?)", file=sys.stderr)
            return 1
        info = describe_job(job)
        line = _progress_line(info)
        if line != last:
            print(line, flush=True)
            last = line
        if info["status"] in ("finished", "failed", "stopped", "canceled"):
            if info["status"] == "finished":
                print(json.dumps(info["result"], indent=2, default=str))
                return 0
            print(f"job {job_id} {info['status']}: {info.get('error') or ''}", file=sys.stderr)
            return 1
        time.sleep(1.0)
    print(f"still running after {timeout:.0f}s; follow it with `prefloop jobs`", file=sys.stderr)
    return 1


def _progress_line(info: dict[str, Any]) -> str:
    progress = info.get("progress") or {}
    done, total = progress.get("done"), progress.get("total")
    amount = f" {done}/{total}" if total else ""
    return f"[{info['status']}] {info.get('stage') or ''}{amount}".rstrip()
