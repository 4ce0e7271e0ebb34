"""A real Label Studio 1.23 server for tests, started from its own virtualenv (.venv-ls, made by
`scripts/setup.sh --test`) on a private port with a fresh data directory.

It starts exactly as `prefloop up` starts it (cli/localstack.py holds the settings it needs).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.services import REPO, free_port, wait_until

LS_BIN = Path(os.environ.get("PREFLOOP_LS_BIN", REPO / ".venv-ls" / "bin" / "label-studio"))
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "prefloop-test-pass"
TOKEN = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class LabelStudioServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    email: str = ADMIN_EMAIL
    # A server reused through PREFLOOP_TEST_LS_PORT may have been started with another password.
    password: str = field(default_factory=lambda: os.environ.get("PREFLOOP_TEST_LS_PASSWORD", ADMIN_PASSWORD))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return TOKEN

    def start(self, timeout: float = 180) -> LabelStudioServer:
        if not LS_BIN.exists():
            raise RuntimeError(f"{LS_BIN} is missing: run `bash scripts/setup.sh --test` to install Label Studio")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        from cli.localstack import label_studio_argv, label_studio_env

        self._log = open(self.data_dir / "label-studio.log", "ab")
        env = label_studio_env(self.data_dir, username=self.email, password=self.password, token=TOKEN)
        self.proc = subprocess.Popen(
            label_studio_argv(LS_BIN, self.port),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(
            lambda: self.proc.poll() is None and requests.get(f"{self.url}/health", timeout=2).ok,
            timeout,
            "Label Studio",
            interval=1.0,
        )
        wait_until(
            lambda: self.api("GET", "/api/current-user/whoami").get("email") == ADMIN_EMAIL, 60, "Label Studio API"
        )
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
        if hasattr(self, "_log"):
            self._log.close()

    # --- the few API calls tests use directly (prefloop itself goes through label-studio-sdk) ---
    def api(self, method: str, path: str, **kwargs) -> Any:
        r = requests.request(method, self.url + path, headers={"Authorization": f"Token {TOKEN}"}, timeout=30, **kwargs)
        r.raise_for_status()
        return r.json() if r.content else None

    def create_project(self, label_config: str, title: str = "prefloop test") -> int:
        return self.api("POST", "/api/projects", json={"title": title, "label_config": label_config})["id"]

    def connect_backend(self, project_id: int, backend_url: str, title: str = "prefloop", **extra) -> dict:
        """POST /api/ml: Label Studio checks /health and /setup and creates the project webhook."""
        return self.api("POST", "/api/ml", json={"project": project_id, "url": backend_url, "title": title, **extra})

    def import_tasks(self, project_id: int, tasks: list[dict]) -> dict:
        return self.api("POST", f"/api/projects/{project_id}/import", json=tasks)

    def tasks(self, project_id: int) -> list[dict]:
        out, page = [], 1
        while True:
            r = requests.get(
                f"{self.url}/api/tasks",
                params={"project": project_id, "page": page, "page_size": 100, "fields": "all"},
                headers={"Authorization": f"Token {TOKEN}"},
                timeout=30,
            )
            if r.status_code == 404:
                return out
            r.raise_for_status()
            batch = r.json()["tasks"]
            out += batch
            if len(batch) < 100:
                return out
            page += 1

    def annotate(self, task_id: int, selected: str, from_name: str = "pw", **extra) -> dict:
        result = [{"from_name": from_name, "to_name": from_name, "type": "pairwise", "value": {"selected": selected}}]
        return self.api("POST", f"/api/tasks/{task_id}/annotations", json={"result": result, **extra})

    def retrieve_predictions(self, project_id: int, task_ids: list[int] | None = None) -> Any:
        """The Data Manager action "Retrieve Predictions": LS calls the backend's /predict for the
        selected tasks (all when `task_ids` is None) in one synchronous request and stores the results."""
        selected = {"all": True, "excluded": []} if task_ids is None else {"all": False, "included": task_ids}
        return self.api(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": selected},
        )

    def webhooks(self, project_id: int) -> list[dict]:
        return self.api("GET", "/api/webhooks", params={"project": project_id})

    def predictions(self, task_id: int) -> list[dict]:
        return self.api("GET", "/api/predictions", params={"task": task_id})
