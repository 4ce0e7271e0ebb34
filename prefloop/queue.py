"""The queue contract between the web tier and the job tier.

The backend enqueues jobs *by dotted name* (it never imports `worker`), with RQ's JSON serializer
(no pickle over Redis), explicit timeouts and TTLs. Webhook-triggered jobs are coalesced: per
project and job kind (policy jobs: and trainer) at most one job waits in the queue; the job clears
its "pending" mark when it starts, so events that arrive while it runs queue exactly one more run,
which reads everything current from Label Studio. Runs of one kind for one project are spaced by
JOB_MIN_INTERVAL (the rate limit for unauthenticated webhooks) and never overlap (a lock held while
running).

Redis keys (all under QUEUE_PREFIX):
  {prefix}:pending:{slot}:{project}   id of the job waiting to run (set NX); the slot is the kind,
                                      for policy jobs `policy.<trainer>`
  {prefix}:last:{kind}:{project}      unix time the last run of that kind started
  {prefix}:running:{kind}:{project}   lock held while a run executes
  {prefix}:projects                   set of project ids connected through /setup
  {prefix}:changes:{project}          count of annotation events (created, updated, deleted) received
  {prefix}:trained:{project}          that count when the newest reward model was read back clean

A START_TRAINING (the Train button, or anyone who can reach /webhook) finds out in the same single
Redis round trip whether an annotation event arrived since the reward-model run that left nothing
unchanged; if none did it queues nothing. When it does queue, the job still counts the changes in
Label Studio and skips when there are none, so a forged event never buys a training run.

Failures a retry cannot fix (prefloop/jobkinds.py PERMANENT_ERRORS) fail the job at once, for every kind.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from redis.commands.core import Script
from redis.lock import Lock
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from prefloop.errors import QueueUnavailable, UnknownProject
from prefloop.jobkinds import DEFAULT_QUEUE, GPU_QUEUE, JOB_ID, JOBS, JobKind, JobSpec, describe_job
from prefloop.redact import redact_url
from prefloop.settings import Settings

logger = logging.getLogger(__name__)

_WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
CLEAN_MARK_TTL = 3600
"""Seconds START_TRAINING trusts the last clean reward run without asking Label Studio (via a job)."""
RUN_LOCK_TTL = 60
"""Seconds a project's run lock outlives the last refresh by the job holding it."""


# KEYS: projects set, pending key, annotation-change counter, counter at the last clean reward run.
# ARGV: project id, RQ job key prefix, bump ("1": count one annotation change), served override
# ("1" served, "2" not served, "0" ask the set), waiting statuses...
# Returns {served (0/1), id of the waiting job or "", unchanged (1: no annotation event since the last clean run)}.
_PROBE_LUA = """
local served = redis.call('SISMEMBER', KEYS[1], ARGV[1])
if ARGV[4] == '1' then served = 1 elseif ARGV[4] == '2' then served = 0 end
if served == 1 and ARGV[3] == '1' then redis.call('INCR', KEYS[3]) end
local trained = redis.call('GET', KEYS[4])
local unchanged = 0
if trained and trained == (redis.call('GET', KEYS[3]) or '0') then unchanged = 1 end
local job_id = redis.call('GET', KEYS[2])
if not job_id then return {served, '', unchanged} end
local status = redis.call('HGET', ARGV[2] .. job_id, 'status')
for i = 5, #ARGV do
  if status == ARGV[i] then return {served, job_id, unchanged} end
end
return {served, '', unchanged}
"""


@dataclass(frozen=True)
class Enqueued:
    job_id: str
    coalesced: bool  # True: an equivalent job was already waiting; nothing new was queued
    delay: float = 0.0  # seconds until the job may start (rate limit)
    unchanged: bool = False  # nothing was queued: no annotation changed since the current reward model

    def as_dict(self) -> dict[str, Any]:
        out = {"job_id": self.job_id or None, "coalesced": self.coalesced, "delay_s": round(self.delay, 3)}
        return {**out, "unchanged": True} if self.unchanged else out


class JobQueue:
    """Enqueues and inspects prefloop jobs. Cheap to build; connects lazily on first use."""

    def __init__(self, settings: Settings, connection: redis.Redis | None = None):
        self.settings = settings
        self.prefix = settings.queue_prefix
        self._connection = connection
        self.shown_url = redact_url(settings.redis_url)  # REDIS_URL without its password, for messages

    # --- plumbing -----------------------------------------------------------------------------
    @property
    def connection(self) -> redis.Redis:
        if self._connection is None:
            self._connection = redis.Redis.from_url(
                self.settings.redis_url, socket_connect_timeout=0.5, socket_timeout=2.0, health_check_interval=30
            )
        return self._connection

    def queue(self, name: str) -> Queue:
        return Queue(f"{self.prefix}-{name}", connection=self.connection, serializer=JSONSerializer)

    def queue_names(self) -> list[str]:
        return [f"{self.prefix}-{GPU_QUEUE}", f"{self.prefix}-{DEFAULT_QUEUE}"]

    def key(self, *parts: Any) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def ping(self) -> bool:
        try:
            return bool(self.connection.ping())
        except redis.RedisError:
            return False

    # --- projects prefloop serves ---------------------------------------------------------------
    def register_project(self, project_id: int) -> None:
        try:
            self.connection.sadd(self.key("projects"), project_id)
        except redis.RedisError as exc:
            raise QueueUnavailable(f"Redis at {self.shown_url} is unreachable: {exc}") from None

    def unavailable(self, exc: Exception, what: str = "") -> QueueUnavailable:
        """The error for a Redis that cannot be reached, without REDIS_URL's password."""
        return QueueUnavailable(f"Redis at {self.shown_url} is unreachable{what}: {type(exc).__name__}")

    def trigger(self, kind: JobKind, project_id: int, *, reason: str, bump: bool = False, **kwargs: Any) -> Enqueued:
        """What a webhook does: refuse a project prefloop does not serve (PROJECTS when set, otherwise
        any project that connected through /setup), else `enqueue`. `bump`: the event is an
        annotation change (counted for START_TRAINING). `on_change=True` (START_TRAINING) queues
        nothing when no annotation changed since the last clean reward-model run.

        A burst of events mostly finds a run already waiting; one Lua call answers both questions
        (is the project served? is a run waiting?) in a single round trip, so the common case costs
        one Redis call per webhook."""
        slot = self._slot(kind, kwargs.get("trainer"))
        try:
            override = ("1" if project_id in self.settings.projects else "2") if self.settings.projects else "0"
            served, waiting, unchanged = self._probe(
                keys=[
                    self.key("projects"),
                    self.key("pending", slot, project_id),
                    self.key("changes", project_id),
                    self.key("trained", project_id),
                ],
                args=[project_id, Job.redis_job_namespace_prefix, int(bump), override, *(s.value for s in _WAITING)],
            )
        except redis.RedisError as exc:
            raise self.unavailable(exc, ", nothing was queued") from None
        if not served:
            raise UnknownProject(
                f"prefloop does not serve project {project_id}: connect it in Label Studio "
                "(Settings > Model) or list it in PROJECTS"
            )
        if waiting:
            return self._coalesce(waiting.decode(), slot, project_id, JOBS[kind], kwargs)
        if kwargs.get("on_change") and not kwargs.get("force") and unchanged:
            return Enqueued("", coalesced=False, unchanged=True)
        return self.enqueue(kind, project_id, reason=reason, **kwargs)

    # --- what changed since the last reward model (START_TRAINING) -------------------------------
    def note_change(self, project_id: int) -> bool:
        """Count an annotation change that queues no job (TASKS_DELETED) for a served project; returns
        whether the project is served."""
        override = ("1" if project_id in self.settings.projects else "2") if self.settings.projects else "0"
        try:
            served, _, _ = self._probe(
                keys=[
                    self.key("projects"),
                    self.key("pending", "none", project_id),
                    self.key("changes", project_id),
                    self.key("trained", project_id),
                ],
                args=[project_id, Job.redis_job_namespace_prefix, 1, override],
            )
        except redis.RedisError as exc:
            raise self.unavailable(exc) from None
        return bool(served)

    def change_count(self, project_id: int) -> int:
        """How many annotation events arrived for the project so far (read by a reward run at its start)."""
        raw = self.connection.get(self.key("changes", project_id))
        return int(raw) if raw is not None else 0

    def mark_trained(self, project_id: int, count: int) -> None:
        """A reward run that started at `count` left nothing unchanged (it published, or found no
        change): START_TRAINING does nothing until the next annotation event, or for at most
        CLEAN_MARK_TTL seconds (an event lost while Redis was down is then found by the run the next
        START_TRAINING queues, which reads Label Studio)."""
        self.connection.set(self.key("trained", project_id), count, ex=CLEAN_MARK_TTL)

    @property
    def _probe(self) -> Script:
        if getattr(self, "_probe_script", None) is None:
            self._probe_script = self.connection.register_script(_PROBE_LUA)
        return self._probe_script

    def served_projects(self) -> list[int]:
        if self.settings.projects:
            return list(self.settings.projects)
        raw = self.connection.smembers(self.key("projects"))
        members = (p.decode() if isinstance(p, bytes) else str(p) for p in raw)
        return sorted(int(p) for p in members if p.isascii() and p.isdigit() and 0 < len(p) <= 10)

    # --- enqueue ----------------------------------------------------------------------------------
    def enqueue(
        self, kind: JobKind, project_id: int, *, reason: str, rate_limited: bool = True, **kwargs: Any
    ) -> Enqueued:
        """Queue one coalesced run of `kind` for `project_id`.

        Job kwargs are JSON: `project_id`, `reason` and `kwargs`. A job of the same kind already
        waiting for the project absorbs this request (its run will read all current data); a
        `force=True` request upgrades the waiting job through a flag the job reads when it starts.
        """
        spec = JOBS[kind]
        slot = self._slot(kind, kwargs.get("trainer"))
        pending_key = self.key("pending", slot, project_id)
        try:
            # Fast path without the lock: a burst of events mostly finds a job already waiting.
            existing = self._waiting_job(pending_key, clean_stale=False)
            if existing is not None:
                return self._coalesce(existing, slot, project_id, spec, kwargs)
            with self.connection.lock(
                self.key("enqueue-lock", slot, project_id), timeout=5, blocking_timeout=2, sleep=0.005
            ):
                existing = self._waiting_job(pending_key)
                if existing is not None:
                    return self._coalesce(existing, slot, project_id, spec, kwargs)
                delay = self._delay(kind, project_id) if rate_limited else 0.0
                job_id = f"{kind.value}-{project_id}-{uuid.uuid4().hex[:12]}"
                self.connection.set(pending_key, job_id, ex=spec.ttl + int(delay) + 60)
                job_kwargs = {"project_id": project_id, "reason": reason, **kwargs}
                options = dict(
                    kwargs=job_kwargs,
                    job_id=job_id,
                    job_timeout=spec.timeout,
                    ttl=spec.ttl,
                    result_ttl=spec.result_ttl,
                    failure_ttl=spec.failure_ttl,
                    retry=self._retry(spec),
                    meta={
                        "kind": kind.value,
                        "project_id": project_id,
                        "reason": reason,
                        "progress": None,
                        "trainer": "ppo" if kind == JobKind.PPO else kwargs.get("trainer"),
                    },
                    description=f"{kind.value} for project {project_id} ({reason})",
                )
                q = self.queue(spec.queue)
                try:
                    if delay > 0:
                        q.enqueue_in(timedelta(seconds=delay), spec.func, **options)
                    else:
                        q.enqueue(spec.func, **options)
                except BaseException:
                    self.connection.delete(pending_key)
                    raise
                logger.info("queued %s (%s) for project %s in %.1fs: %s", job_id, kind.value, project_id, delay, reason)
                return Enqueued(job_id, coalesced=False, delay=delay)
        except redis.RedisError as exc:
            raise QueueUnavailable(f"Redis at {self.shown_url} is unreachable, nothing was queued: {exc}") from None

    def _retry(self, spec: JobSpec) -> Retry | None:
        """RQ's retry policy: the kind's backoff, or JOB_RETRY_INTERVALS when set; none for kinds without retries."""
        intervals = (self.settings.job_retry_intervals or spec.retries) if spec.retries else ()
        return Retry(max=len(intervals), interval=list(intervals)) if intervals else None

    def _slot(self, kind: JobKind, trainer: str | None) -> str:
        """What coalesces: one waiting job per project and kind, and for policy jobs per trainer (a
        waiting GRPO run does not absorb a DPO request; None is POLICY_TRAINER)."""
        return f"{kind.value}.{trainer or self.settings.policy_trainer}" if kind == JobKind.POLICY else kind.value

    def _coalesce(self, job_id: str, slot: str, project_id: int, spec: JobSpec, kwargs: dict[str, Any]) -> Enqueued:
        """The waiting job absorbs this request; a forced one (or an on_change one: START_TRAINING)
        upgrades it through a flag it reads when it starts (never downgrading "force")."""
        if kwargs.get("force"):
            self.connection.set(self.key("force", slot, project_id), "force", ex=spec.ttl)
        elif kwargs.get("on_change"):
            self.connection.set(self.key("force", slot, project_id), "change", ex=spec.ttl, nx=True)
        return Enqueued(job_id, coalesced=True)

    def _waiting_job(self, pending_key: str, *, clean_stale: bool = True) -> str | None:
        raw = self.connection.get(pending_key)
        if raw is None:
            return None
        job_id = raw.decode() if isinstance(raw, bytes) else raw
        status = self.connection.hget(f"{Job.redis_job_namespace_prefix}{job_id}", "status")
        if isinstance(status, bytes):
            status = status.decode()
        if status is not None and status in {s.value for s in _WAITING}:
            return job_id
        if clean_stale:
            self.connection.delete(pending_key)  # stale mark: the job ran, failed or expired
        return None

    def _delay(self, kind: JobKind, project_id: int) -> float:
        if self.settings.job_min_interval <= 0:
            return 0.0
        last = self.connection.get(self.key("last", kind.value, project_id))
        if last is None:
            return 0.0
        return max(0.0, float(last) + self.settings.job_min_interval - time.time())

    # --- called by the job when it starts --------------------------------------------------------
    def mark_started(self, kind: JobKind, project_id: int, job_id: str, trainer: str | None = None) -> str | None:
        """Clear the pending mark (so new events queue one more run) and return what was requested
        while this job waited: "force" (train regardless), "change" (START_TRAINING: train when
        anything changed) or None. `trainer`: a policy job's trainer (see _slot)."""
        slot = self._slot(kind, trainer)
        pipe = self.connection.pipeline()
        pipe.get(self.key("pending", slot, project_id))
        pipe.getdel(self.key("force", slot, project_id))
        pipe.set(self.key("last", kind.value, project_id), time.time())
        pending, forced, _ = pipe.execute()
        if pending is not None and pending.decode() == job_id:
            self.connection.delete(self.key("pending", slot, project_id))
        if forced is None:
            return None
        return "change" if forced == b"change" else "force"

    def running_lock(self, kind: JobKind, project_id: int) -> Lock:
        """A lock held for the whole run, so two workers never train one project at once. It expires
        RUN_LOCK_TTL seconds after its holder's last refresh (worker/recovery.py refreshes it while a
        job runs), so a killed run frees the project within a minute, not after the job timeout."""
        spec = JOBS[kind]
        # thread_local=False: a refresher thread extends the lock the job's thread took.
        lock: Lock = self.connection.lock(
            self.key("running", kind.value, project_id),
            timeout=RUN_LOCK_TTL,
            blocking_timeout=spec.timeout,
            thread_local=False,
        )
        return lock

    # --- inspection ---------------------------------------------------------------------------------
    def fetch(self, job_id: str) -> Job | None:
        """The job, or None when there is none by that id (also for ids no job can have)."""
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            return None
        try:
            return Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
        except NoSuchJobError:
            return None

    def jobs(self, project_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Recent jobs (waiting, running, finished, failed), newest first, as JSON-ready dicts."""
        ids: list[str] = []
        for name in (GPU_QUEUE, DEFAULT_QUEUE):
            q = self.queue(name)
            ids += q.get_job_ids()
            for registry in (
                q.scheduled_job_registry,
                q.started_job_registry,
                q.finished_job_registry,
                q.failed_job_registry,
                q.deferred_job_registry,
            ):
                ids += registry.get_job_ids()
        if project_id is not None:
            ids = [i for i in ids if i.split("-")[-2:-1] == [str(project_id)]]
        out = []
        for job in Job.fetch_many(list(dict.fromkeys(ids)), connection=self.connection, serializer=JSONSerializer):
            if job is not None:
                out.append(describe_job(job))
        out.sort(key=lambda j: j["enqueued_at"] or "", reverse=True)
        return out[:limit]
