"""`prefloop train-reward --project ID`: queue a forced reward-model run (like Label Studio's Train
button), optionally waiting for it and showing its progress."""

from __future__ import annotations

import json
import sys
import time


def register(sub) -> None:
    p = sub.add_parser("train-reward", help="queue a reward-model training run now (like the Train button)")
    p.add_argument("--project", type=int, required=True, help="Label Studio project id")
    p.add_argument("--wait", action="store_true", help="wait for the run and show its progress")
    p.add_argument("--timeout", type=float, default=4 * 3600, help="seconds to wait with --wait")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training knob for this run, e.g. --set num_train_epochs=2 (JSON values)")
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"prefloop train-reward: --set wants KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def run(args) -> int:
    from prefloop.errors import InputError
    from prefloop.queue import JobKind, JobQueue
    from prefloop.settings import Settings

    settings = Settings.from_env()
    overrides = parse_overrides(args.set)
    if overrides:
        from worker.reward import RewardTrainConfig  # entry point: validate knobs before queueing

        try:
            RewardTrainConfig.from_dict(overrides)
        except (TypeError, ValueError) as exc:
            raise InputError(f"--set: {exc}") from None
    queue = JobQueue(settings)
    extra = {"config": overrides} if overrides else {}
    enqueued = queue.enqueue(JobKind.TRAIN_REWARD, args.project, reason="prefloop train-reward", force=True,
                             rate_limited=False, **extra)
    note = " (joined the run already waiting; it will train regardless of MIN_NEW_ANNOTATIONS)" if enqueued.coalesced else ""
    print(f"queued reward-model training for project {args.project}: job {enqueued.job_id}{note}")
    if not args.wait:
        return 0
    return wait_for(queue, enqueued.job_id, args.timeout)


def wait_for(queue, job_id: str, timeout: float) -> int:
    from prefloop.queue import describe_job

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


def _progress_line(info: dict) -> str:
    progress = info.get("progress") or {}
    done, total = progress.get("done"), progress.get("total")
    amount = f" {done}/{total}" if total else ""
    return f"[{info['status']}] {info.get('stage') or ''}{amount}".rstrip()
