"""Label Studio's project events. A webhook is only a trigger: prefloop takes no data from its body
(jobs read tasks and annotations back from Label Studio), so a forged call can at most queue a
coalesced, rate-limited job for a project prefloop serves; with WEBHOOK_SECRET set, a call without
the secret header is refused before its body is read (backend/auth.py). Bodies carry project
secrets (token, task_data_password): only the action, project id and counts are ever logged.

Annotation events are counted per project (prefloop/queue.py); START_TRAINING (the Train button)
queues a run only when one arrived since the last reward-model run that left nothing unchanged,
and that run trains only when Label Studio shows at least one annotation created, changed or
deleted since the newest version. Otherwise the answer is a 200 with status "unchanged".
"""

from __future__ import annotations

import logging
from typing import Any, cast

from backend.context import Context
from prefloop.errors import BadRequest
from prefloop.jobkinds import JobKind
from prefloop.labelstudio import parse_project_id

logger = logging.getLogger(__name__)

# action -> (job kind, key that must be present, its type, extra job kwargs, an annotation change?)
ACTIONS: dict[str, tuple[JobKind, str | None, type | tuple[type, ...] | None, dict[str, Any], bool]] = {
    "ANNOTATION_CREATED": (JobKind.TRAIN_REWARD, "annotation", dict, {}, True),
    "ANNOTATION_UPDATED": (JobKind.TRAIN_REWARD, "annotation", dict, {}, True),
    "ANNOTATIONS_CREATED": (JobKind.TRAIN_REWARD, "annotation", (list, dict), {}, True),
    "ANNOTATIONS_DELETED": (JobKind.TRAIN_REWARD, "annotations", list, {}, True),
    "START_TRAINING": (JobKind.TRAIN_REWARD, None, None, {"on_change": True}, False),
    "TASKS_CREATED": (JobKind.GENERATE, "tasks", list, {}, False),
}
IGNORED = {
    "TASKS_DELETED": "deleted tasks need no work: training reads Label Studio's current state",
    "PROJECT_UPDATED": "project settings are read from Label Studio when a job runs",
}
CHANGES_WITHOUT_JOB = {"TASKS_DELETED"}  # deletes annotations: counted, so START_TRAINING trains next time
UNCHANGED = (
    "no annotation was created, changed or deleted since the current reward model: nothing to train "
    "(`prefloop train-reward --force` trains anyway)"
)


def handle_event(ctx: Context, body: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    """`force`: an authenticated /train, which trains whatever changed."""
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadRequest("webhook body is missing 'action' (a Label Studio event name like ANNOTATION_CREATED)")
    if len(action) > 64:
        raise BadRequest("webhook 'action' is not a Label Studio event name (longer than 64 characters)")
    if "project" not in body or body["project"] is None:
        raise BadRequest(f"{action} webhook body is missing 'project'")
    project_id = parse_project_id(body["project"])
    if action not in ACTIONS:
        reason = IGNORED.get(action, "prefloop does not act on this event")
        if action in CHANGES_WITHOUT_JOB:
            ctx.queue.note_change(project_id)
        logger.info("webhook %s for project %s ignored", action, project_id)
        return {"status": "ignored", "action": action, "project_id": project_id, "reason": reason}
    kind, key, kind_type, extra, change = ACTIONS[action]
    if key is not None:
        if key not in body:
            raise BadRequest(f"{action} webhook body is missing {key!r}")
        expected = cast("type | tuple[type, ...]", kind_type)  # every ACTIONS entry with a key has a type
        if not isinstance(body[key], expected):
            raise BadRequest(f"{action} webhook body[{key!r}] has the wrong type ({type(body[key]).__name__})")
    extra = {"force": True} if force else extra
    enqueued = ctx.queue.trigger(kind, project_id, reason=action, bump=change, **extra)
    if enqueued.unchanged:
        logger.info("webhook %s for project %s: nothing changed since the current reward model", action, project_id)
        return {"status": "unchanged", "action": action, "project_id": project_id, "reason": UNCHANGED}
    logger.info(
        "webhook %s for project %s -> %s job %s%s",
        action,
        project_id,
        kind.value,
        enqueued.job_id,
        " (coalesced)" if enqueued.coalesced else "",
    )
    out = {"status": "queued", "action": action, "project_id": project_id, "kind": kind.value, **enqueued.as_dict()}
    if kind == JobKind.TRAIN_REWARD and ctx.settings.policy_trainer == "dpo":
        # DPO trains on the pairs themselves: annotation events (DPO_MIN_NEW_ANNOTATIONS) and the Train
        # button (any change) queue it beside the reward model, which still serves predictions.
        policy = ctx.queue.trigger(JobKind.POLICY, project_id, reason=action, trainer="dpo", **extra)
        out["policy"] = {"trainer": "dpo", **policy.as_dict()}
    return out
