"""A whole prefloop deployment for end-to-end tests: a private Redis, `prefloop serve` (gunicorn) and
`prefloop worker`, each a real process on a private port, talking to a real Label Studio.

Settings keep everything small (the tiny GPT-2, a few tokens per answer, no rate limit) so the
loop goes round in seconds on two CPU cores. Logs go to files that failing assertions print.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from prefloop.artifacts import ArtifactStore
from tests.support.services import Process, RedisServer, free_port, prefloop_env, start_server, wait_until

FAST = {
    "job_min_interval": 0,
    "min_new_annotations": 4,
    "ppo_min_accuracy": 0,
    "max_new_tokens": 8,
    "answers_per_prompt": 3,  # ranking projects only (pairwise ones always get two)
    "generation_batch_size": 8,
    "device": "cpu",
    "workers": 1,
    "threads": 4,
    "log_level": "INFO",
    "job_retry_intervals": "1,2",
    "omp_num_threads": 1,
}
"""Settings that make every job take seconds. JOB_RETRY_INTERVALS shortens RQ's backoff so the
failure drills see retries and the final failure quickly."""


@dataclass
class Stack:
    base: Path
    label_studio: Any  # tests.support.labelstudio_server.LabelStudioServer
    model_source: Path
    extra: dict[str, Any] = field(default_factory=dict)
    redis: RedisServer | None = None
    server: Process | None = None
    worker: Process | None = None
    port: int = field(default_factory=free_port)
    workers_started: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def model_dir(self) -> Path:
        return self.base / "models"

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.model_dir)

    def env(self) -> dict[str, str]:
        settings = dict(
            FAST,
            redis_url=self.redis.url,
            model_dir=self.model_dir,
            base_model=self.model_source,
            label_studio_url=self.label_studio.url,
            label_studio_api_key=self.label_studio.token,
            backend_url=self.url,
            **self.extra,
        )
        return prefloop_env(**settings)

    # --- processes -----------------------------------------------------------------------------
    def start(self) -> Stack:
        self.base.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(data_dir=self.base / "redis").start()
        self.server = start_server(self.env(), self.port, self.base / "serve.log")
        self.start_worker()
        return self

    def start_worker(self) -> Process:
        self.workers_started += 1
        self.worker = Process(
            ["worker", "--name", f"e2e-{self.port}-{self.workers_started}"], self.env(), self.base / "worker.log"
        ).start()
        wait_until(
            lambda: f"e2e-{self.port}-{self.workers_started}" in self.worker_names(),
            60,
            "prefloop worker",
            interval=0.3,
        )
        return self.worker

    def worker_names(self) -> list[str]:
        import redis
        from rq import Worker

        return [w.name for w in Worker.all(connection=redis.Redis.from_url(self.redis.url))]

    def stop(self) -> None:
        for proc in (self.worker, self.server):
            if proc is not None:
                proc.stop()
        if self.redis is not None:
            self.redis.stop()

    def logs(self) -> str:
        parts = []
        for name in ("serve.log", "worker.log"):
            path = self.base / name
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"===== {name} (last 6000 chars) =====\n{text[-6000:]}")
        return "\n".join(parts)

    # --- the backend's own API -----------------------------------------------------------------
    def get(self, path: str, **params) -> Any:
        r = requests.get(self.url + path, params=params, timeout=10)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=10)

    def jobs(self, project_id: int) -> list[dict[str, Any]]:
        return self.get("/jobs", project=project_id)["jobs"]

    def model_version(self, project_id: int, schema: str | None = None) -> str:
        """What /setup answers Label Studio, exactly as Label Studio asks (it always sends the label
        config; default: label_config/pairwise.xml)."""
        from prefloop.label_config import load_label_config

        r = self.post(
            "/setup", {"project": f"{project_id}.1700000000", "schema": schema or load_label_config("pairwise")}
        )
        r.raise_for_status()
        return r.json()["model_version"]

    def current(self, project_id: int) -> dict[str, str | None]:
        return self.store.current(project_id)

    def wait_job(
        self,
        project_id: int,
        kind: str,
        predicate: Callable[[dict], bool],
        timeout: float,
        what: str,
    ) -> dict[str, Any]:
        """Wait for a job of `kind` that satisfies `predicate`; on timeout, show the jobs and the logs."""

        def find():
            return next((j for j in self.jobs(project_id) if j["kind"] == kind and predicate(j)), None)

        try:
            return wait_until(find, timeout, what, interval=0.5)
        except TimeoutError as exc:
            raise AssertionError(
                f"{exc}\njobs: {json.dumps(self.jobs(project_id), indent=1)[:4000]}\n{self.logs()}"
            ) from None

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            return wait_until(predicate, timeout, what, interval=0.5)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def wait_version(self, project_id: int, kind: str, after: str | None, timeout: float) -> str:
        """Wait until `kind`'s serving version changes from `after`; returns the new one."""

        def changed():
            version = self.current(project_id).get(kind)
            return version if version and version != after else None

        return self.wait_for(changed, timeout, f"a new {kind} version for project {project_id}")

    def kill_worker(self) -> None:
        """SIGKILL the worker and its work-horse: what a crash, `docker kill` or a pulled plug does."""
        self.worker.kill_tree()


def finished(job: dict) -> bool:
    return job["status"] == "finished"


def since(t0: float) -> Callable[[dict], bool]:
    """Jobs enqueued after monotonic-independent wall time `t0` (UTC ISO strings compare as text)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 - 1))
    return lambda job: (job.get("enqueued_at") or "") >= stamp
