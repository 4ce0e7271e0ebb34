"""The routes Label Studio 1.23 calls (ARCHITECTURE.md, "Label Studio protocol"), plus job status."""

from __future__ import annotations

import logging
import time

import redis
from flask import Blueprint, Flask, Response, jsonify, request

from backend.auth import untrusted_webhook, webhook_trusted
from backend.context import context
from backend.predict import predict_tasks
from backend.requests import allowed_project, json_body, require
from backend.webhook import handle_event
from prefloop.errors import BadRequest, QueueUnavailable
from prefloop.label_config import parse_label_config
from prefloop.labelstudio import parse_project_id

logger = logging.getLogger(__name__)
bp = Blueprint("routes", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/")
@bp.get("/health")
def health() -> Response:
    """Liveness for Label Studio (1 s limit): never loads a model; Redis is reported, not required."""
    ctx = context()
    return jsonify(status="UP", model_class="prefloop", queue="up" if ctx.queue.ping() else "down")


@bp.post("/setup")
def setup() -> Response:
    """Label Studio connects a project: check its label config (Label Studio always sends it as
    `schema`; a project without a Pairwise tag cannot be served), remember the project, and answer
    the serving model_version (3 s limit: no model is loaded here). Everything is validated before
    the project is stored."""
    ctx = context()
    body = json_body()
    project_id = parse_project_id(require(body, "project", (str, int)))
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise BadRequest(
            "body['schema'] must be the project's label config XML (Label Studio sends it): prefloop "
            "serves only projects whose label config has a <Pairwise> tag"
        )
    parse_label_config(schema)
    allowed_project(project_id)
    try:
        ctx.queue.register_project(project_id)
    except QueueUnavailable as exc:  # connecting still works; LS calls /setup again before predictions
        logger.warning("project %s connected but not registered for webhooks: %s", project_id, exc)
    return jsonify(model_version=ctx.store.model_version(project_id))


@bp.post("/predict")
def predict() -> Response:
    ctx = context()
    body = json_body()
    tasks = require(body, "tasks", list)
    if not tasks:
        raise BadRequest("body['tasks'] is empty: send at least one task")
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise BadRequest(f"tasks[{i}] must be an object with a 'data' object")
    project_id = parse_project_id(require(body, "project", (str, int)))
    allowed_project(project_id)
    label_config = require(body, "label_config", str)
    config = parse_label_config(label_config)
    started = time.perf_counter()
    results = predict_tasks(ctx, project_id, tasks, config)
    logger.info("predicted %d tasks for project %s in %.3fs", len(tasks), project_id, time.perf_counter() - started)
    return jsonify(results=results, model_version=ctx.store.model_version(project_id))


@bp.post("/webhook")
def webhook() -> Response:
    """Label Studio's events; with WEBHOOK_SECRET set, only with its header (backend/auth.py), except the
    Train button's START_TRAINING, which Label Studio sends without it and which never forces a run."""
    ctx = context()
    trusted = webhook_trusted(ctx.settings) if ctx.settings.webhook_secret else True  # a wrong secret: 403 here
    body = json_body()
    if not trusted and body.get("action") != "START_TRAINING":
        raise untrusted_webhook(body.get("action"))
    return jsonify(handle_event(ctx, body))


@bp.post("/train")
def train() -> Response:
    """Legacy training trigger (behind a Label Studio feature flag): the Train button. With basic auth
    on, the caller has authenticated (backend/auth.py) and the run is forced; without it, /train is
    as open as /webhook and trains only when an annotation changed."""
    ctx = context()
    body = json_body()
    return jsonify(
        handle_event(ctx, {"action": "START_TRAINING", "project": body.get("project")}, force=ctx.settings.auth_enabled)
    )


@bp.get("/versions")
def versions() -> Response:
    """Versions for Label Studio's model-version list; ?project=ID narrows to one project."""
    ctx = context()
    projects = [parse_project_id(request.args["project"])] if "project" in request.args else ctx.store.projects()
    names, details = [], []
    for project_id in projects:
        names.append(ctx.store.model_version(project_id))
        for entry in ctx.store.all_versions(project_id):
            entry.pop("path", None)
            details.append({"project_id": project_id, **entry})
    return jsonify(versions=sorted(set(names)), details=details)


@bp.get("/jobs")
def jobs() -> Response:
    ctx = context()
    project_id = parse_project_id(request.args["project"]) if "project" in request.args else None
    try:
        return jsonify(jobs=ctx.queue.jobs(project_id))
    except redis.RedisError as exc:
        raise ctx.queue.unavailable(exc, ": no job can be listed") from None


@bp.get("/jobs/<path:job_id>")
def job(job_id: str) -> Response | tuple[Response, int]:
    """One job; an id no job can have (`abc.def`, `%00`, a path) is a 404 like an expired one."""
    from prefloop.jobkinds import describe_job

    ctx = context()
    try:
        found = ctx.queue.fetch(job_id)
        described = describe_job(found) if found is not None else None
    except redis.RedisError as exc:
        raise ctx.queue.unavailable(exc, ": the job cannot be read") from None
    if described is None:
        shown = job_id if len(job_id) <= 80 else job_id[:80] + "..."
        return jsonify(error="NotFound", message=f"no job {shown!r} (finished jobs expire after their TTL)"), 404
    return jsonify(described)
