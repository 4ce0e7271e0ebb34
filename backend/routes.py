"""The routes Label Studio 1.23 calls (ARCHITECTURE.md, "Label Studio protocol"), plus job status."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Flask, jsonify, request

from backend.context import context
from backend.predict import predict_tasks
from backend.requests import allowed_project, json_body, require
from backend.webhook import handle_event
from prefloop.errors import BadRequest, QueueUnavailable
from prefloop.label_config import parse_pairwise_config
from prefloop.labelstudio import parse_project_id

logger = logging.getLogger(__name__)
bp = Blueprint("routes", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/")
@bp.get("/health")
def health():
    """Liveness for Label Studio (1 s limit): never loads a model; Redis is reported, not required."""
    ctx = context()
    return jsonify(status="UP", model_class="prefloop", queue="up" if ctx.queue.ping() else "down")


@bp.post("/setup")
def setup():
    """Label Studio connects a project: check its label config, remember the project, and answer
    the serving model_version (3 s limit: no model is loaded here)."""
    ctx = context()
    body = json_body()
    project_id = parse_project_id(require(body, "project", (str, int)))
    schema = body.get("schema")
    if schema is not None:
        if not isinstance(schema, str):
            raise BadRequest("body['schema'] must be the label config XML as a string")
        parse_pairwise_config(schema)
    allowed_project(project_id)
    try:
        ctx.queue.register_project(project_id)
    except QueueUnavailable as exc:  # connecting still works; LS calls /setup again before predictions
        logger.warning("project %s connected but not registered for webhooks: %s", project_id, exc)
    return jsonify(model_version=ctx.store.model_version(project_id))


@bp.post("/predict")
def predict():
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
    config = parse_pairwise_config(label_config)
    started = time.perf_counter()
    results = predict_tasks(ctx, project_id, tasks, config)
    logger.info("predicted %d tasks for project %s in %.3fs", len(tasks), project_id, time.perf_counter() - started)
    return jsonify(results=results, model_version=ctx.store.model_version(project_id))


@bp.post("/webhook")
def webhook():
    return jsonify(handle_event(context(), json_body()))


@bp.post("/train")
def train():
    """Legacy training trigger (behind a Label Studio feature flag): same as the Train button."""
    body = json_body()
    return jsonify(handle_event(context(), {"action": "START_TRAINING", "project": body.get("project")}))


@bp.get("/versions")
def versions():
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
def jobs():
    ctx = context()
    project_id = parse_project_id(request.args["project"]) if "project" in request.args else None
    return jsonify(jobs=ctx.queue.jobs(project_id))


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    from prefloop.queue import describe_job

    found = context().queue.fetch(job_id)
    if found is None:
        return jsonify(error="NotFound", message=f"no job {job_id!r} (finished jobs expire after their TTL)"), 404
    return jsonify(describe_job(found))

