"""`prefloop init`: the first start, made automatic and safe to repeat.

1. Waits (with --wait) until Label Studio answers with the configured token.
2. Finds the projects to serve: the ids in PROJECTS, or else the project titled PROJECT_TITLE,
   which it creates with label_config/pairwise.xml when there is none.
3. Sets what annotators need: an empty annotation cannot be submitted (a click on the answer the
   reward model pre-selected unselects it; without this, Submit would save `result: []`, which
   Label Studio counts as done and prefloop drops), and a first Data Manager tab without the wide
   `prefloop` JSON column (`annotator_settings`).
4. Connects this backend (BACKEND_URL, as Label Studio reaches it) to each project with
   `POST /api/ml`, unless a backend with that URL is already connected. Label Studio then checks
   /health and /setup and creates the project webhook.
3b. With WEBHOOK_SECRET set, puts it on that webhook (`BACKEND_URL/webhook`) as the custom header
   X-Prefloop-Webhook-Secret, which /webhook then requires; a run with another secret updates it.
5. Adds the Data Manager tab "Least certain first" (ordered by prediction score, lowest first) and
   sets the project's task sampling to "Uncertainty sampling", so "Label All Tasks" also serves the
   pairs the reward model is least sure about first (`least_certain_view`).
6. Prints where to log in.

A second run finds the project and the connection and changes nothing.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefloop.errors import LabelStudioUnavailable
from prefloop.settings import Settings

if TYPE_CHECKING:
    from prefloop.labelstudio import LabelStudioClient

logger = logging.getLogger(__name__)
BACKEND_TITLE = "prefloop"


@dataclass(frozen=True)
class ProjectState:
    id: int
    title: str
    created: bool  # the project was created by this run
    connected: bool  # the backend was connected by this run (False: it already was)
    webhook_secret: str = "off"  # "set" (by this run), "already set", "off" (no WEBHOOK_SECRET), "no webhook"


@dataclass(frozen=True)
class InitResult:
    login_url: str
    login_email: str | None
    projects: list[ProjectState]

    @property
    def changed(self) -> bool:
        return any(p.created or p.connected or p.webhook_secret == "set" for p in self.projects)

    def lines(self, backend_url: str) -> list[str]:
        out = [f"Label Studio: {self.login_url}  (log in as {self.login_email or 'the admin account'})"]
        for p in self.projects:
            out.append(
                f"project {p.title!r} (id {p.id}): {'created' if p.created else 'found'}; backend {backend_url} "
                f"{'connected' if p.connected else 'already connected'}"
            )
            if p.webhook_secret == "no webhook":
                out.append(
                    f"  WARNING: Label Studio has no webhook {backend_url}/webhook for this project, so "
                    "WEBHOOK_SECRET could not be set on it (README, Security)"
                )
            out.append(f"  annotate at {self.login_url}/projects/{p.id}/data")
        if not self.changed:
            out.append("nothing to do: everything was already set up")
        return out


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init", help="first start: create the Label Studio project and connect this backend (idempotent)"
    )
    p.add_argument(
        "--label-config",
        default="pairwise",
        choices=["pairwise", "pairwise_chat", "ranking"],
        help="labeling interface of a project created by this command (label_config/<name>.xml)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to SECONDS for Label Studio and the backend to answer (compose uses this)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    from prefloop.logs import setup_logging

    setup_logging(settings.log_level)
    result = first_start(settings, label_config=args.label_config, wait=args.wait)
    print("\n".join(result.lines(settings.backend_url)))
    return 0


def first_start(
    settings: Settings, *, label_config: str = "pairwise", wait: float = 0.0, client: LabelStudioClient | None = None
) -> InitResult:
    from prefloop.labelstudio import LabelStudioClient

    client = client or LabelStudioClient(settings)
    me = _wait_for_label_studio(client, wait)
    if wait > 0:
        _wait_for_backend(settings.backend_url, wait)
    found = _projects(client, settings, label_config)
    for project, _created in found:
        annotator_settings(client, project)
        least_certain_view(client, project["id"])
    projects = [_connect(client, settings, project, created) for project, created in found]
    login_url = (settings.label_studio_public_url or settings.label_studio_url).rstrip("/")
    return InitResult(login_url, me.get("email"), projects)


def _projects(client: LabelStudioClient, settings: Settings, label_config: str) -> list[tuple[dict[str, Any], bool]]:
    """(project, created) for each project prefloop serves."""
    from prefloop.label_config import load_label_config, parse_label_config

    if settings.projects:
        found = [client.get_project(pid) for pid in settings.projects]  # UnknownProject names a missing id
    else:
        found = sorted(client.list_projects(title=settings.project_title), key=lambda p: p["id"])[:1]
    if not found:
        xml = load_label_config(label_config)
        project = client.create_project(
            settings.project_title, xml, description="Pairwise preferences for prefloop's RLHF loop."
        )
        logger.info(
            "created project %s (id %s) with label_config/%s.xml", settings.project_title, project["id"], label_config
        )
        return [(project, True)]
    for project in found:
        parse_label_config(project.get("label_config") or "")  # without <Pairwise> or <Ranker> it cannot be served
    return [(project, False) for project in found]


# Label Studio 1.23.2's own defaults for a first tab (the columns /api/dm/columns marks not visible),
# plus task.data["prefloop"], the wide JSON column of prefloop's bookkeeping (which model wrote the
# answers), which annotators do not need.
PREFLOOP_COLUMN = "tasks:data.prefloop"
_LS_HIDDEN = (
    "inner_id",
    "annotations_results",
    "annotations_ids",
    "predictions_score",
    "predictions_model_versions",
    "predictions_results",
    "file_upload",
    "storage_filename",
    "created_at",
    "updated_at",
    "updated_by",
    "avg_lead_time",
    "draft_exists",
)
_LS_HIDDEN_LABELING = ("id", "completed_at", "cancelled_annotations", "total_predictions", "annotators")
ANNOTATOR_HIDDEN_COLUMNS = {
    "explore": [PREFLOOP_COLUMN, *(f"tasks:{c}" for c in _LS_HIDDEN)],
    "labeling": [PREFLOOP_COLUMN, *(f"tasks:{c}" for c in _LS_HIDDEN_LABELING + _LS_HIDDEN)],
}
"""`hiddenColumns` of a Data Manager tab made for annotators; every tab prefloop creates uses it."""


def annotator_settings(client: LabelStudioClient, project: dict[str, Any]) -> None:
    """Refuse empty annotations (Label Studio then disables Submit while no answer is chosen, and
    says "Empty annotations denied in this project") and give a project without Data Manager tabs
    a first tab that hides the `prefloop` column. Both only when not so already."""
    pid = project["id"]
    if project.get("enable_empty_annotation", True):
        client.update_project(pid, enable_empty_annotation=False)
        logger.info("project %s: empty annotations are refused", pid)
    if not client.list_views(pid):
        client.create_view(pid, {"title": "Default", "hiddenColumns": ANNOTATOR_HIDDEN_COLUMNS})


LEAST_CERTAIN_TAB = "Least certain first"
UNCERTAINTY_SAMPLING = "Uncertainty sampling"
_SCORE_COLUMNS = ("tasks:predictions_score", "tasks:predictions_results")


def least_certain_view(client: LabelStudioClient, project_id: int) -> dict[str, Any]:
    """The tab "Least certain first": tasks ordered by prediction score ascending, the score and the
    pick shown. prefloop writes each task's prediction with score = the reward model's probability
    for its pick and keeps the project's model_version on the serving version, which is what Label
    Studio averages into that column (worker/predictions.py). Also sets the project's sampling to
    "Uncertainty sampling": Label Studio's labeling stream then serves unlabeled tasks that have a
    current prediction lowest score first, from any tab. Idempotent; returns the tab."""
    views = client.list_views(project_id)
    tab = next((v for v in views if (v.get("data") or {}).get("title") == LEAST_CERTAIN_TAB), None)
    if tab is None:
        hidden = {k: [c for c in v if c not in _SCORE_COLUMNS] for k, v in ANNOTATOR_HIDDEN_COLUMNS.items()}
        tab = client.create_view(
            project_id, {"title": LEAST_CERTAIN_TAB, "ordering": ["tasks:predictions_score"], "hiddenColumns": hidden}
        )
        logger.info("project %s: added the Data Manager tab %r", project_id, LEAST_CERTAIN_TAB)
    if client.get_project(project_id).get("sampling") != UNCERTAINTY_SAMPLING:
        client.update_project(project_id, sampling=UNCERTAINTY_SAMPLING)
    return tab


def _connect(client: LabelStudioClient, settings: Settings, project: dict[str, Any], created: bool) -> ProjectState:
    url = settings.backend_url.rstrip("/")
    connected = any((b.get("url") or "").rstrip("/") == url for b in client.list_ml_backends(project["id"]))
    if not connected:
        auth = (settings.basic_auth_user, settings.basic_auth_pass) if settings.auth_enabled else None
        client.create_ml_backend(project["id"], url, BACKEND_TITLE, basic_auth=auth)
        logger.info("connected backend %s to project %s", url, project["id"])
    secret = secure_webhook(client, project["id"], url, settings.webhook_secret)
    return ProjectState(project["id"], project.get("title") or "", created, not connected, secret)


def secure_webhook(client: LabelStudioClient, project_id: int, backend_url: str, secret: str) -> str:
    """Put WEBHOOK_SECRET on the webhook Label Studio created for the backend (its URL is the
    backend's plus /webhook), keeping any other header. Returns what happened (ProjectState)."""
    from prefloop.labelstudio import WEBHOOK_SECRET_HEADER

    if not secret:
        return "off"
    target = backend_url.rstrip("/") + "/webhook"
    hooks = [h for h in client.list_webhooks(project_id) if (h.get("url") or "").rstrip("/") == target]
    if not hooks:
        logger.warning("project %s has no webhook %s: WEBHOOK_SECRET not set on it", project_id, target)
        return "no webhook"
    changed = False
    for hook in hooks:
        headers = dict(hook.get("headers") or {})
        if headers.get(WEBHOOK_SECRET_HEADER) != secret:
            client.set_webhook_headers(hook["id"], {**headers, WEBHOOK_SECRET_HEADER: secret})
            changed = True
    if changed:
        logger.info("project %s: webhook %s now sends %s", project_id, target, WEBHOOK_SECRET_HEADER)
    return "set" if changed else "already set"


def _wait_for_label_studio(client: LabelStudioClient, wait: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        try:
            return client.whoami()
        except LabelStudioUnavailable:
            if time.monotonic() >= deadline:
                raise
            logger.info("waiting for Label Studio at %s", client.url)
            time.sleep(2.0)


def _wait_for_backend(url: str, wait: float) -> None:
    """Best effort: Label Studio checks the backend itself when it is connected, and it may reach
    BACKEND_URL where this process cannot; so a backend that stays silent here is only logged."""
    import requests

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if requests.get(url.rstrip("/") + "/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(2.0)
    logger.warning("the backend at %s did not answer /health from here; Label Studio will check it", url)
