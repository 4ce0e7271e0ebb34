"""`prefloop jobs --project ID`: recent jobs with their state and progress (the same data as GET /jobs)."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("jobs", help="show recent jobs (generation, reward training, PPO) with state and progress")
    p.add_argument("--project", type=int, help="only this Label Studio project")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
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
    for job in jobs:
        progress = job.get("progress") or {}
        amount = f" {progress.get('done')}/{progress.get('total')}" if progress.get("total") else ""
        outcome = ""
        if isinstance(job.get("result"), dict):
            result = job["result"]
            outcome = f" -> {result.get('status')}" + (f" {result['version']}" if result.get("version") else "")
            if result.get("status") == "skipped":
                outcome += f" ({result.get('reason')})"
        if job.get("error"):
            outcome = f" -> {job['error']}"
        print(f"{job['enqueued_at'] or '-':<32} {job['kind'] or '?':<12} {job['status'] or '?':<9} "
              f"{job['id']}  {job.get('stage') or ''}{amount}{outcome}")
    return 0
