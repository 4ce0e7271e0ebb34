"""`prefloop jobs --project ID`: recent jobs with their state and progress (the same data as GET /jobs)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("jobs", help="show recent jobs (generation, reward training, PPO) with state and progress")
    p.add_argument("--project", type=int, help="only this Label Studio project")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prefloop.errors import QueueUnavailable
    from prefloop.queue import JobQueue
    from prefloop.settings import Settings

    settings = Settings.from_env()
    queue = JobQueue(settings)
    if not queue.ping():
        raise QueueUnavailable(f"Redis at {settings.redis_url} is unreachable: is it running (REDIS_URL)?")
    jobs = queue.jobs(args.project, limit=args.limit)
    if args.json:
        print(json.dumps(jobs, indent=2, default=str))
        return 0
    if not jobs:
        print("no jobs" + (f" for project {args.project}" if args.project else ""))
        return 0
    rows = [
        (_when(job["enqueued_at"]), _kind(job), job["status"] or "?", _stage(job), job["id"], _outcome(job))
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for *cells, outcome in rows:
        print(
            ("  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + "  " + outcome).rstrip()
        )
    return 0


def _when(iso: str | None) -> str:
    """2026-12-01T09:10:11.123456+00:00 -> 2026-12-01 09:10:11 (UTC, as RQ stores it)."""
    return (iso or "-")[:19].replace("T", " ")


def _stage(job: dict[str, Any]) -> str:
    """What a running job does ("training 3/20"); an ended job's stage alone ("done", "skipped")."""
    stage = job.get("stage") or ""
    progress = job.get("progress") or {}
    if job.get("status") == "started" and progress.get("total"):
        return f"{stage} {progress.get('done')}/{progress['total']}".strip()
    return stage


def _outcome(job: dict[str, Any]) -> str:
    if job.get("error"):
        return str(job["error"])
    result = job.get("result")
    if not isinstance(result, dict):
        return ""
    if result.get("status") == "skipped":
        return str(result.get("reason") or "")
    return str(result.get("version") or result.get("model_version") or result.get("policy_version") or "")


def _kind(job: dict[str, Any]) -> str:
    """The job kind, with the policy trainer a ppo/policy job runs."""
    return (job["kind"] or "?") + (f" ({job['trainer']})" if job.get("trainer") else "")
