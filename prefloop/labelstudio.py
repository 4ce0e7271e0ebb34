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
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

from prefloop.errors import LabelStudioError, LabelStudioUnavailable, UnknownProject
from prefloop.redact import redact, redact_url
from prefloop.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")


WEBHOOK_SECRET_HEADER = "X-Prefloop-Webhook-Secret"
"""The custom header prefloop puts on Label Studio's webhook (its `headers` field, set through
/api/webhooks/<id>) carrying WEBHOOK_SECRET: Label Studio sends event webhooks without basic auth."""

MAX_PROJECT_ID_DIGITS = 10
"""Label Studio's project ids are database integers (at most 2,147,483,647): ten ASCII digits bound
them, so an id can always name a directory and a Redis key."""
_PROJECT_ID = re.compile(rf"[0-9]{{1,{MAX_PROJECT_ID_DIGITS}}}")


def parse_project_id(raw: Any) -> int:
    """Label Studio sends the project as "<id>.<created timestamp>" in /setup and /predict, as an
    int or an object with "id" in webhooks. Returns the integer id: ASCII digits only (no "²", no
    sign, no spaces), at most MAX_PROJECT_ID_DIGITS of them, positive. Checked before anything is
    stored or a path is built from it."""
    from prefloop.errors import BadRequest

    if isinstance(raw, dict):
        raw = raw.get("id")
    if isinstance(raw, bool):
        raise BadRequest(f"project must be an id, got {raw!r}")
    if isinstance(raw, int):
        value = raw
        if not 0 < value < 10**MAX_PROJECT_ID_DIGITS:
            shown = str(value) if abs(value) < 10**40 else f"an integer of {value.bit_length()} bits"
            raise BadRequest(
                f"project id must be a positive integer of at most {MAX_PROJECT_ID_DIGITS} digits, got {shown}"
            )
    elif isinstance(raw, str) and _PROJECT_ID.fullmatch(raw.split(".", 1)[0]):
        value = int(raw.split(".", 1)[0])
    else:
        raise BadRequest(
            'project must be a Label Studio project id like 12 or "12.1700000000" (ASCII digits, at most '
            f"{MAX_PROJECT_ID_DIGITS}), got {_short(repr(raw), 40)}"
        )
    if value <= 0:
        raise BadRequest(f"project id must be positive, got {value}")
    return value


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return cast(dict[str, Any], obj.model_dump(mode="json"))
    return dict(obj)


class LabelStudioClient:
    def __init__(self, settings: Settings, *, retries: int = 3, backoff: float = 0.5, timeout: float = 30.0):
        if not settings.label_studio_api_key:
            raise LabelStudioError(
                "LABEL_STUDIO_API_KEY is empty: set it to a personal access token or a legacy "
                "token from Label Studio (Account & Settings)"
            )
        self.url = settings.label_studio_url.rstrip("/")
        self.shown_url = redact_url(self.url)  # for messages and logs: no password
        self._api_key = settings.label_studio_api_key
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._sdk: Any = None

    @property
    def sdk(self) -> Any:  # the generated SDK types its requests as its own models; prefloop passes dicts
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
                    raise UnknownProject(
                        f"Label Studio at {self.shown_url} has no project {project_id} ({what})"
                    ) from None
                if status in (401, 403):
                    raise LabelStudioError(
                        f"Label Studio refused {what} with {status}: check LABEL_STUDIO_API_KEY "
                        "(a personal access token, or a legacy token if those are enabled)"
                    ) from None
                if status < 500:
                    raise LabelStudioError(f"Label Studio refused {what} with {status}: {_short(exc.body)}") from None
                error = f"{what}: Label Studio answered {status}"
            except (httpx.TransportError, OSError) as exc:
                error = f"{what}: {type(exc).__name__}: {exc}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        raise LabelStudioUnavailable(
            f"Label Studio at {self.shown_url} is unreachable ({redact(error)}) after {self.retries + 1} tries"
        )

    # --- projects --------------------------------------------------------------------------------
    def get_project(self, project_id: int) -> dict[str, Any]:
        return _as_dict(
            self.call(
                f"reading project {project_id}", lambda: self.sdk.projects.get(id=project_id), project_id=project_id
            )
        )

    def get_label_config(self, project_id: int) -> str:
        return self.get_project(project_id).get("label_config") or ""

    def list_projects(self, title: str | None = None) -> list[dict[str, Any]]:
        """Every project the token sees; with `title`, only those with exactly that title."""
        pager = self.call("listing projects", lambda: self.sdk.projects.list(title=title, page_size=100))
        projects = [_as_dict(p) for p in pager]
        return [p for p in projects if title is None or p.get("title") == title]

    def create_project(self, title: str, label_config: str, description: str = "") -> dict[str, Any]:
        return _as_dict(
            self.call(
                f"creating project {title!r}",
                lambda: self.sdk.projects.create(title=title, label_config=label_config, description=description),
            )
        )

    def whoami(self) -> dict[str, Any]:
        """The account the token belongs to (its email is the login)."""
        return _as_dict(self.call("reading the current user", lambda: self.sdk.users.whoami()))

    # --- ML backends -----------------------------------------------------------------------------
    def list_ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        backends = self.call(
            f"listing ML backends of project {project_id}",
            lambda: self.sdk.ml.list(project=project_id),
            project_id=project_id,
        )
        return [_as_dict(b) for b in backends or []]

    def create_ml_backend(
        self, project_id: int, url: str, title: str, *, basic_auth: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        """POST /api/ml: Label Studio checks the backend's /health and /setup and creates the project webhook."""
        auth = (
            dict(auth_method="BASIC_AUTH", basic_auth_user=basic_auth[0], basic_auth_pass=basic_auth[1])
            if basic_auth
            else {}
        )
        return _as_dict(
            self.call(
                f"connecting the ML backend {url} to project {project_id}",
                lambda: self.sdk.ml.create(project=project_id, url=url, title=title, **auth),
                project_id=project_id,
            )
        )

    # --- webhooks --------------------------------------------------------------------------------
    def list_webhooks(self, project_id: int) -> list[dict[str, Any]]:
        hooks = self.call(
            f"listing webhooks of project {project_id}",
            lambda: self.sdk.webhooks.list(project=str(project_id)),
            project_id=project_id,
        )
        return [_as_dict(h) for h in hooks or []]

    def set_webhook_headers(self, webhook_id: int, headers: dict[str, str]) -> dict[str, Any]:
        """Replace the custom headers Label Studio sends with every call of a webhook."""
        return _as_dict(
            self.call(
                f"setting the headers of webhook {webhook_id}",
                lambda: self.sdk.webhooks.update(id=webhook_id, headers=headers),
            )
        )

    # --- tasks -----------------------------------------------------------------------------------
    def iter_tasks(self, project_id: int, *, page_size: int = 500, fields: str = "all") -> Iterator[dict[str, Any]]:
        """Every task of the project, with annotations when fields="all", page by page."""
        page = 1
        while True:

            def fetch(page: int = page) -> Any:
                return self.sdk.tasks.list(project=project_id, page=page, page_size=page_size, fields=fields)

            try:
                pager = self.call(f"listing tasks of project {project_id}", fetch, project_id=project_id)
            except UnknownProject:
                if page == 1:
                    raise
                return  # Label Studio answers 404 for the page after a full last page (exactly 500 tasks)
            items = list(pager.items or [])
            for item in items:
                yield _as_dict(item)
            if len(items) < page_size or not getattr(pager, "has_next", True):
                return
            page += 1

    def get_task(self, task_id: int) -> dict[str, Any]:
        return _as_dict(self.call(f"reading task {task_id}", lambda: self.sdk.tasks.get(id=str(task_id))))

    def update_task_data(self, task_id: int, data: dict[str, Any]) -> dict[str, Any]:
        return _as_dict(
            self.call(f"updating task {task_id}", lambda: self.sdk.tasks.update(id=str(task_id), data=data))
        )

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        """Import complete tasks (each {"data": {...}, optionally "predictions": [...]}) in one request."""
        return _as_dict(
            self.call(
                f"importing {len(tasks)} tasks into project {project_id}",
                lambda: self.sdk.projects.import_tasks(id=project_id, request=tasks, return_task_ids=True),
                project_id=project_id,
            )
        )

    # --- predictions (worker/predictions.py writes them; see prefloop/prediction_store.py) -------
    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]]) -> int:
        """Create predictions ({"task", "result", "score", "model_version"}) in one request; returns
        how many Label Studio created (it drops regions its validator rejects, so callers compare)."""
        body = self._raw(
            "POST",
            f"api/projects/{int(project_id)}/import/predictions",
            f"importing {len(predictions)} predictions into project {project_id}",
            project_id=project_id,
            json=predictions,
        )
        return int((body or {}).get("created") or 0)

    def task_predictions(self, task_id: int) -> list[dict[str, Any]]:
        return [
            _as_dict(p)
            for p in self.call(
                f"listing predictions of task {task_id}", lambda: self.sdk.predictions.list(task=task_id)
            )
            or []
        ]

    def delete_prediction(self, prediction_id: int) -> None:
        self._raw("DELETE", f"api/predictions/{int(prediction_id)}", f"deleting prediction {prediction_id}")

    def model_versions(self, project_id: int) -> dict[str, int]:
        """{model_version: number of predictions} of the project's stored predictions."""
        body = self._raw(
            "GET",
            f"api/projects/{int(project_id)}/model-versions/",
            f"listing model versions of project {project_id}",
            project_id=project_id,
        )
        return {str(k): int(v) for k, v in (body or {}).items()} if isinstance(body, dict) else {}

    def delete_model_version(self, project_id: int, model_version: str) -> int:
        """Delete every prediction of one model_version in the project; returns how many."""
        body = self._raw(
            "DELETE",
            f"api/projects/{int(project_id)}/model-versions/",
            f"deleting predictions of {model_version} in project {project_id}",
            project_id=project_id,
            json={"model_version": model_version},
        )
        return int((body or {}).get("deleted_predictions") or 0) if isinstance(body, dict) else 0

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        """PATCH /api/projects/<id> with `fields` (e.g. model_version, sampling)."""
        body = self._raw(
            "PATCH",
            f"api/projects/{int(project_id)}",
            f"updating project {project_id} ({', '.join(sorted(fields))})",
            project_id=project_id,
            json=fields,
        )
        return dict(body or {})

    # --- Data Manager tabs -----------------------------------------------------------------------
    def list_views(self, project_id: int) -> list[dict[str, Any]]:
        body = self._raw(
            "GET",
            "api/dm/views/",
            f"listing Data Manager tabs of project {project_id}",
            project_id=project_id,
            params={"project": int(project_id)},
        )
        return [dict(v) for v in body or []]

    def create_view(self, project_id: int, data: dict[str, Any]) -> dict[str, Any]:
        body = self._raw(
            "POST",
            "api/dm/views/",
            f"creating a Data Manager tab in project {project_id}",
            project_id=project_id,
            json={"project": int(project_id), "data": data},
        )
        return dict(body or {})

    def _raw(self, method: str, path: str, what: str, *, project_id: int | None = None, **kwargs: Any) -> Any:
        """A request the SDK has no (working) method for, through the SDK's own HTTP client and auth,
        with `call`'s retries and errors."""
        from label_studio_sdk.core.api_error import ApiError

        def send() -> Any:
            response = self.sdk._client_wrapper.httpx_client.request(path, method=method, **kwargs)
            if response.status_code >= 400:
                raise ApiError(status_code=response.status_code, headers=dict(response.headers), body=response.text)
            return response.json() if response.content else None

        return self.call(what, send, project_id=project_id)


def _short(body: Any, limit: int = 300) -> str:
    text = redact(str(body))
    return text if len(text) <= limit else text[:limit] + "..."
