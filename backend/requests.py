"""Validating request bodies: every problem becomes a 400 that names the field."""

from __future__ import annotations

import json
from typing import Any

from flask import g, request

from prefloop.errors import BadRequest, UnknownProject
from prefloop.labelstudio import parse_project_id


def json_body() -> dict[str, Any]:
    """The request's JSON object, parsed once per request (kept on `flask.g.prefloop_body`, where the
    metrics hook reads it: a second parse of a hostile body is a second chance to fail)."""
    if "prefloop_body" in g:
        parsed: dict[str, Any] = g.prefloop_body  # set below, always a dict
        return parsed
    if not request.data:
        raise BadRequest("request body is empty: send a JSON object")
    try:
        body = json.loads(request.data)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, too deeply nested, over-long integers
        raise BadRequest("request body is not valid JSON (or nests too deeply)") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    g.prefloop_body = body
    return body


def require(body: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "body") -> Any:
    if key not in body or body[key] is None:
        raise BadRequest(f"{where} is missing {key!r}")
    value = body[key]
    if (
        not isinstance(value, kind)
        or isinstance(value, bool)
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
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
