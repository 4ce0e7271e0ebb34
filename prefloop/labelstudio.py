"""Talking to Label Studio through `label-studio-sdk`, with errors that say what went wrong.

Label Studio is the source of truth: webhooks only trigger jobs, and jobs read tasks and
annotations back through this client. Every call returns plain dicts (JSON shapes as Label Studio
documents them), so the rest of prefloop does not depend on the SDK's model classes.

Transient failures (connection refused, timeouts, 5xx) are retried a few times with backoff inside
one call; a Label Studio that stays down raises `LabelStudioUnavailable`, and RQ's job-level retry
(with longer backoff) takes over from there.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator, TypeVar

from prefloop.errors import LabelStudioError, LabelStudioUnavailable, UnknownProject
from prefloop.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")


def parse_project_id(raw: Any) -> int:
    """Label Studio sends the project as "<id>.<created timestamp>" in /setup and /predict, as an
    int or an object with "id" in webhooks. Returns the integer id."""
    from prefloop.errors import BadRequest

    if isinstance(raw, dict):
        raw = raw.get("id")
    if isinstance(raw, bool):
        raise BadRequest(f"project must be an id, got {raw!r}")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.split(".", 1)[0].strip().isdigit():
        value = int(raw.split(".", 1)[0])
    else:
        raise BadRequest(f"project must be a Label Studio project id like 12 or \"12.1700000000\", got {raw!r}")
    if value <= 0:
        raise BadRequest(f"project id must be positive, got {value}")
    return value


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return dict(obj)


class LabelStudioClient:
    def __init__(self, settings: Settings, *, retries: int = 3, backoff: float = 0.5, timeout: float = 30.0):
        if not settings.label_studio_api_key:
            raise LabelStudioError("LABEL_STUDIO_API_KEY is empty: set it to a personal access token or a legacy "
                                   "token from Label Studio (Account & Settings)")
        self.url = settings.label_studio_url.rstrip("/")
        self._api_key = settings.label_studio_api_key
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._sdk = None

    @property
    def sdk(self):
        if self._sdk is None:
            from label_studio_sdk import LabelStudio

            # max_retries=0: call() retries with its own backoff; the SDK's retries (2 per request on
            # connection errors, 1 s and 2 s) would nest inside those: ~17 s before an unreachable
            # Label Studio is reported instead of ~3.5 s.
            self._sdk = LabelStudio(base_url=self.url, api_key=self._api_key, timeout=self.timeout, max_retries=0)
        return self._sdk

    def call(self, what: str, fn: Callable[[], T], *, project_id: int | None = None) -> T:
        """Run one SDK call with retries for transient failures and clear errors for the rest."""
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        for attempt in range(self.retries + 1):
            try:
                return fn()
            except ApiError as exc:
                status = exc.status_code or 0
                if status == 404 and project_id is not None:
                    raise UnknownProject(f"Label Studio at {self.url} has no project {project_id} ({what})") from None
                if status in (401, 403):
                    raise LabelStudioError(f"Label Studio refused {what} with {status}: check LABEL_STUDIO_API_KEY "
                                           "(a personal access token, or a legacy token if those are enabled)") from None
                if status < 500:
                    raise LabelStudioError(f"Label Studio refused {what} with {status}: {_short(exc.body)}") from None
                error = f"{what}: Label Studio answered {status}"
            except (httpx.TransportError, OSError) as exc:
                error = f"{what}: {type(exc).__name__}: {exc}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** attempt)
        raise LabelStudioUnavailable(f"Label Studio at {self.url} is unreachable ({error}) after {self.retries + 1} tries")

    # --- projects --------------------------------------------------------------------------------
    def get_project(self, project_id: int) -> dict[str, Any]:
        return _as_dict(self.call(f"reading project {project_id}", lambda: self.sdk.projects.get(id=project_id), project_id=project_id))

    def get_label_config(self, project_id: int) -> str:
        return self.get_project(project_id).get("label_config") or ""

    def list_projects(self, title: str | None = None) -> list[dict[str, Any]]:
        """Every project the token sees; with `title`, only those with exactly that title."""
        pager = self.call("listing projects", lambda: self.sdk.projects.list(title=title, page_size=100))
        projects = [_as_dict(p) for p in pager]
        return [p for p in projects if title is None or p.get("title") == title]

    def create_project(self, title: str, label_config: str, description: str = "") -> dict[str, Any]:
        return _as_dict(self.call(f"creating project {title!r}", lambda: self.sdk.projects.create(
            title=title, label_config=label_config, description=description)))

    def whoami(self) -> dict[str, Any]:
        """The account the token belongs to (its email is the login)."""
        return _as_dict(self.call("reading the current user", lambda: self.sdk.users.whoami()))

    # --- ML backends -----------------------------------------------------------------------------
    def list_ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        backends = self.call(f"listing ML backends of project {project_id}", lambda: self.sdk.ml.list(project=project_id),
                             project_id=project_id)
        return [_as_dict(b) for b in backends or []]

    def create_ml_backend(self, project_id: int, url: str, title: str, *, basic_auth: tuple[str, str] | None = None) -> dict[str, Any]:
        """POST /api/ml: Label Studio checks the backend's /health and /setup and creates the project webhook."""
        auth = dict(auth_method="BASIC_AUTH", basic_auth_user=basic_auth[0], basic_auth_pass=basic_auth[1]) if basic_auth else {}
        return _as_dict(self.call(f"connecting the ML backend {url} to project {project_id}", lambda: self.sdk.ml.create(
            project=project_id, url=url, title=title, **auth), project_id=project_id))

    # --- tasks -----------------------------------------------------------------------------------
    def iter_tasks(self, project_id: int, *, page_size: int = 500, fields: str = "all") -> Iterator[dict[str, Any]]:
        """Every task of the project, with annotations when fields="all", page by page."""
        page = 1
        while True:
            def fetch(page=page):
                return self.sdk.tasks.list(project=project_id, page=page, page_size=page_size, fields=fields)

            pager = self.call(f"listing tasks of project {project_id}", fetch, project_id=project_id)
            items = list(pager.items or [])
            for item in items:
                yield _as_dict(item)
            if len(items) < page_size or not getattr(pager, "has_next", True):
                return
            page += 1

    def get_task(self, task_id: int) -> dict[str, Any]:
        return _as_dict(self.call(f"reading task {task_id}", lambda: self.sdk.tasks.get(id=str(task_id))))

    def update_task_data(self, task_id: int, data: dict[str, Any]) -> dict[str, Any]:
        return _as_dict(self.call(f"updating task {task_id}", lambda: self.sdk.tasks.update(id=str(task_id), data=data)))

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        """Import complete tasks (each {"data": {...}, optionally "predictions": [...]}) in one request."""
        return _as_dict(self.call(
            f"importing {len(tasks)} tasks into project {project_id}",
            lambda: self.sdk.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True),
            project_id=project_id,
        ))

    def create_prediction(self, task_id: int, result: list[dict[str, Any]], score: float, model_version: str) -> dict[str, Any]:
        return _as_dict(self.call(
            f"creating a prediction for task {task_id}",
            lambda: self.sdk.predictions.create(task=task_id, result=result, score=score, model_version=model_version),
        ))


def _short(body: Any, limit: int = 300) -> str:
    text = str(body)
    return text if len(text) <= limit else text[:limit] + "..."
