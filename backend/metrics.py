"""GET /metrics in Prometheus' text format (version 0.0.4), for machines; /status is for people.

Everything is read when scraped, from where it already lives, so every gunicorn process answers
the same and nothing is lost when one restarts:
- the queues and RQ's registries in Redis: jobs waiting, scheduled, running, finished and failed;
  how long the recent finished jobs took (the newest RECENT_JOBS per queue RQ still keeps);
- RQ's worker records: jobs each live worker finished or failed since it started;
- /predict latency: a histogram kept in Redis, updated after each /predict request;
- MODEL_DIR: the serving reward-model and policy version of each project.

Redis being down is reported (`prefloop_redis_up 0`), never an error: the scrape still answers.
Basic auth applies when BASIC_AUTH_* is set, like every route except /health and /webhook.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import redis
from flask import Blueprint, Flask, Response, g, request

from backend.context import Context, context
from prefloop.artifacts import read_json
from prefloop.jobkinds import DEFAULT_QUEUE, GPU_QUEUE

logger = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

PREDICT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 100.0)
RECENT_JOBS = 200
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


# --- /predict latency, recorded around the request ---------------------------------------------------
@bp.before_app_request
def _start_timer() -> None:
    if request.endpoint == "routes.predict":
        g.prefloop_predict_started = time.perf_counter()


@bp.after_app_request
def _observe_predict(response: Response) -> Response:
    started = g.pop("prefloop_predict_started", None)
    if started is not None:
        body = g.get("prefloop_body")  # parsed once, by backend.requests.json_body; never parsed again here
        tasks = len(body["tasks"]) if isinstance(body, dict) and isinstance(body.get("tasks"), list) else 0
        observe_predict(context(), time.perf_counter() - started, response.status_code, tasks)
    return response


def observe_predict(ctx: Context, seconds: float, status: int, tasks: int) -> None:
    """Add one /predict request to the histogram in Redis; a Redis outage only skips the sample."""
    key = ctx.queue.key("metrics", "predict")
    pipe = ctx.queue.connection.pipeline(transaction=False)
    for bound in PREDICT_BUCKETS:
        if seconds <= bound:
            pipe.hincrby(key, f"le:{bound}", 1)
    pipe.hincrby(key, "count", 1)
    pipe.hincrbyfloat(key, "sum", seconds)
    pipe.hincrby(key, f"code:{status}", 1)
    pipe.hincrby(key, "tasks", tasks)
    try:
        pipe.execute()
    except redis.RedisError as exc:
        logger.debug("predict latency not recorded: %s", exc)


# --- the scrape ---------------------------------------------------------------------------------------
@bp.get("/metrics")
def metrics() -> Response:
    ctx = context()
    out = Exposition()
    up = ctx.queue.ping()
    out.add("prefloop_redis_up", "gauge", "1 when Redis answers, 0 when it does not.", [({}, int(up))])
    if up:
        try:
            _queue_metrics(ctx, out)
            _predict_metrics(ctx, out)
        except redis.RedisError as exc:  # Redis went away mid-scrape: answer with what we have
            logger.warning("metrics: Redis error while reading queues: %s", exc)
    _version_metrics(ctx, out)
    return Response(out.text(), content_type=CONTENT_TYPE)


def _queue_metrics(ctx: Context, out: Exposition) -> None:
    from rq import Worker

    conn = ctx.queue.connection
    depth: list[tuple[dict[str, str], int]] = []
    states: list[tuple[dict[str, str], int]] = []
    running: list[tuple[dict[str, str], float]] = []
    durations: defaultdict[str, list[float]] = defaultdict(list)
    failed: defaultdict[str, int] = defaultdict(int)
    for name in (GPU_QUEUE, DEFAULT_QUEUE):
        q = ctx.queue.queue(name)
        depth.append(({"queue": name}, q.count))
        registries = {
            "scheduled": q.scheduled_job_registry,
            "started": q.started_job_registry,
            "deferred": q.deferred_job_registry,
            "finished": q.finished_job_registry,
            "failed": q.failed_job_registry,
        }
        states.append(({"queue": name, "state": "queued"}, q.count))
        states += [({"queue": name, "state": state}, conn.zcard(reg.key)) for state, reg in registries.items()]
        for job in _jobs(conn, q.started_job_registry.get_job_ids(cleanup=False)):
            if job["started_at"] is not None:
                running.append(
                    ({"queue": name, "kind": job["kind"], "project": job["project"]}, time.time() - job["started_at"])
                )
        for job in _jobs(conn, q.finished_job_registry.get_job_ids(0, RECENT_JOBS - 1, desc=True, cleanup=False)):
            if job["started_at"] is not None and job["ended_at"] is not None:
                durations[job["kind"]].append(job["ended_at"] - job["started_at"])
        for job in _jobs(conn, q.failed_job_registry.get_job_ids(cleanup=False)):
            failed[job["kind"]] += 1
    workers = Worker.all(connection=conn)
    out.add("prefloop_queue_depth", "gauge", "Jobs waiting in each queue.", depth)
    out.add("prefloop_jobs", "gauge", "Jobs per queue and state, as RQ's queues and registries hold them now.", states)
    out.add("prefloop_job_running_seconds", "gauge", "How long each running job has been running.", running)
    out.add(
        "prefloop_failed_jobs",
        "gauge",
        "Failed jobs RQ still keeps (FAILURE_TTL), by kind.",
        [({"kind": k}, n) for k, n in sorted(failed.items())],
    )
    out.add(
        "prefloop_recent_job_duration_seconds",
        "gauge",
        f"Run time of the newest finished jobs RQ still keeps (at most {RECENT_JOBS} per queue), by kind.",
        [({"kind": k, "stat": stat}, value) for k, ds in sorted(durations.items()) for stat, value in _stats(ds)],
    )
    out.add(
        "prefloop_recent_jobs_finished",
        "gauge",
        "Finished jobs counted in prefloop_recent_job_duration_seconds, by kind.",
        [({"kind": k}, len(ds)) for k, ds in sorted(durations.items())],
    )
    out.add("prefloop_workers", "gauge", "Live RQ workers.", [({}, len(workers))])
    out.add(
        "prefloop_worker_jobs_total",
        "counter",
        "Jobs each live worker finished or failed since it started.",
        [
            ({"worker": w.name, "result": r}, n)
            for w in workers
            for r, n in (("finished", w.successful_job_count), ("failed", w.failed_job_count))
        ],
    )
    out.add(
        "prefloop_worker_busy_seconds_total",
        "counter",
        "Seconds each live worker spent running jobs since it started.",
        [({"worker": w.name}, w.total_working_time) for w in workers],
    )


def _predict_metrics(ctx: Context, out: Exposition) -> None:
    # the connection does not decode responses (no decode_responses): keys and values are bytes
    stored = cast("dict[bytes, bytes]", ctx.queue.connection.hgetall(ctx.queue.key("metrics", "predict")))
    raw = {k.decode(): v.decode() for k, v in stored.items()}
    count = int(raw.get("count", 0))
    buckets = [({"le": _num(b)}, int(raw.get(f"le:{b}", 0))) for b in PREDICT_BUCKETS] + [({"le": "+Inf"}, count)]
    out.histogram(
        "prefloop_predict_seconds",
        "Time to answer Label Studio's /predict, whole request.",
        buckets,
        float(raw.get("sum", 0.0)),
        count,
    )
    codes = sorted((k.split(":", 1)[1], int(v)) for k, v in raw.items() if k.startswith("code:"))
    out.add(
        "prefloop_predict_requests_total",
        "counter",
        "/predict requests by HTTP status.",
        [({"code": c}, n) for c, n in codes],
    )
    out.add("prefloop_predict_tasks_total", "counter", "Tasks sent to /predict.", [({}, int(raw.get("tasks", 0)))])


def _version_metrics(ctx: Context, out: Exposition) -> None:
    info, published = [], []
    for project in ctx.store.projects():
        current = ctx.store.current(project)
        for kind in ("reward", "policy"):
            version = current.get(kind)
            if version is None:
                continue
            info.append(({"project": str(project), "kind": kind, "version": version}, 1))
            stamp = (read_json(ctx.store.kind_dir(project, kind) / version / "version.json") or {}).get("published_at")
            if stamp is not None:
                published.append(({"project": str(project), "kind": kind}, stamp))
    out.add(
        "prefloop_serving_version_info",
        "gauge",
        "The reward-model and policy version each project serves (value 1).",
        info,
    )
    out.add(
        "prefloop_serving_version_published_timestamp_seconds",
        "gauge",
        "When the serving version was published (unix time).",
        published,
    )


# --- helpers ------------------------------------------------------------------------------------------
def _jobs(conn: redis.Redis, ids: Iterable[str]) -> list[dict[str, Any]]:
    """kind, project and start/end times of jobs, read with one pipelined HMGET each."""
    from rq.job import Job
    from rq.utils import utcparse

    ids = [i.split(":", 1)[0] for i in ids]  # started-registry members may carry ":<execution id>"
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(Job.key_for(job_id), "meta", "started_at", "ended_at")
    out = []
    for job_id, (meta, started, ended) in zip(ids, pipe.execute()):
        try:
            meta = json.loads(meta) if meta else {}
        except (ValueError, UnicodeDecodeError):
            meta = {}
        out.append(
            {
                "kind": str(meta.get("kind") or job_id.split("-", 1)[0] or "other"),
                "project": str(meta.get("project_id", "")),
                "started_at": utcparse(started.decode()).timestamp() if started else None,
                "ended_at": utcparse(ended.decode()).timestamp() if ended else None,
            }
        )
    return out


def _stats(durations: list[float]) -> list[tuple[str, float]]:
    ds = sorted(durations)
    return [
        ("p50", ds[len(ds) // 2]),
        ("p90", ds[min(len(ds) - 1, int(len(ds) * 0.9))]),
        ("max", ds[-1]),
        ("mean", sum(ds) / len(ds)),
    ]


def _num(value: float) -> str:
    return repr(float(value))


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Exposition:
    """Builds the text format: HELP and TYPE once per metric, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, name: str, kind: str, help_text: str, samples: Sequence[tuple[Mapping[str, Any], float]]) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        self.lines += [self._sample(name, labels, value) for labels, value in samples]

    def histogram(
        self, name: str, help_text: str, buckets: Sequence[tuple[Mapping[str, Any], int]], total: float, count: int
    ) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        self.lines += [self._sample(f"{name}_bucket", labels, n) for labels, n in buckets]
        self.lines += [self._sample(f"{name}_sum", {}, total), self._sample(f"{name}_count", {}, count)]

    @staticmethod
    def _sample(name: str, labels: Mapping[str, Any], value: float) -> str:
        body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        return f"{name}{{{body}}} {float(value)!r}" if body else f"{name} {float(value)!r}"

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
