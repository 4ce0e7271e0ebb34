"""Label Studio's project events. A webhook is only a trigger: prefloop takes no data from its body
(jobs read tasks and annotations back from Label Studio), so a forged call can at most queue a
coalesced, rate-limited job for a project prefloop serves. Bodies carry project secrets (token,
task_data_password): only the action, project id and counts are ever logged."""

from __future__ import annotations

import logging
from typing import Any

from backend.context import Context
from prefloop.errors import BadRequest
from prefloop.labelstudio import parse_project_id
from prefloop.queue import JobKind

logger = logging.getLogger(__name__)

# action -> (job kind, key that must be present, its type, whether the run is forced)
ACTIONS: dict[str, tuple[JobKind, str | None, type | tuple[type, ...] | None, bool]] = {
    "ANNOTATION_CREATED": (JobKind.TRAIN_REWARD, "annotation", dict, False),
    "ANNOTATION_UPDATED": (JobKind.TRAIN_REWARD, "annotation", dict, False),
    "ANNOTATIONS_CREATED": (JobKind.TRAIN_REWARD, "annotation", (list, dict), False),
    "ANNOTATIONS_DELETED": (JobKind.TRAIN_REWARD, "annotations", list, False),
    "START_TRAINING": (JobKind.TRAIN_REWARD, None, None, True),
    "TASKS_CREATED": (JobKind.GENERATE, "tasks", list, False),
}
IGNORED = {
    "TASKS_DELETED": "deleted tasks need no work: training reads Label Studio's current state",
    "PROJECT_UPDATED": "project settings are read from Label Studio when a job runs",
}


def handle_event(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadRequest("webhook body is missing 'action' (a Label Studio event name like ANNOTATION_CREATED)")
    if "project" not in body or body["project"] is None:
        raise BadRequest(f"{action} webhook body is missing 'project'")
    project_id = parse_project_id(body["project"])
    if action not in ACTIONS:
        reason = IGNORED.get(action, "prefloop does not act on this event")
        logger.info("webhook %s for project %s ignored", action, project_id)
        return {"status": "ignored", "action": action, "project_id": project_id, "reason": reason}
    kind, key, kind_type, force = ACTIONS[action]
    if key is not None:
        if key not in body:
            raise BadRequest(f"{action} webhook body is missing {key!r}")
        if not isinstance(body[key], kind_type):
            raise BadRequest(f"{action} webhook body[{key!r}] has the wrong type ({type(body[key]).__name__})")
    extra = {"force": True} if force else {}
    enqueued = ctx.queue.trigger(kind, project_id, reason=action, **extra)
    logger.info("webhook %s for project %s -> %s job %s%s", action, project_id, kind.value, enqueued.job_id,
                " (coalesced)" if enqueued.coalesced else "")
    return {"status": "queued", "action": action, "project_id": project_id, "kind": kind.value, **enqueued.as_dict()}
