"""Validating request bodies: every problem becomes a 400 that names the field."""

from __future__ import annotations

from typing import Any

from flask import request

from prefloop.errors import BadRequest, UnknownProject
from prefloop.labelstudio import parse_project_id


def json_body() -> dict[str, Any]:
    if not request.data:
        raise BadRequest("request body is empty: send a JSON object")
    try:
        body = request.get_json(force=True, silent=False)
    except Exception:  # werkzeug raises its own BadRequest with an HTML description
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def require(body: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "body") -> Any:
    if key not in body or body[key] is None:
        raise BadRequest(f"{where} is missing {key!r}")
    value = body[key]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise BadRequest(f"{where}[{key!r}] must be {names}, got {type(value).__name__}")
    return value


def allowed_project(raw: Any) -> int:
    """The project id of a request, refused (404) when PROJECTS is set and does not list it."""
    from backend.context import context

    project_id = parse_project_id(raw)
    projects = context().settings.projects
    if projects and project_id not in projects:
        raise UnknownProject(f"project {project_id} is not in PROJECTS ({','.join(map(str, projects))})")
    return project_id
