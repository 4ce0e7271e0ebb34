"""/predict: one entry per task, in order.

Until a reward model is published, entries carry no `result`, so Label Studio stores nothing and asks
again later. Afterwards each task with both answers gets the reward model's pick as a Pairwise
result with `score` = the probability of that pick, so annotators can sort by score and label the
least certain pairs first. Tasks whose answers are still missing get no result, and generation for
the project is queued (coalesced) so they get answers.

Picks the training job stored with the version (predictions.json) are looked up; other tasks are
scored live in batches until PREDICT_TIME_BUDGET runs out, and the rest come back without a result
(Label Studio asks again later instead of hitting its 100 s limit).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from backend.context import Context
from prefloop.artifacts import serving_version
from prefloop.errors import InputError, ModelNotFound, QueueUnavailable
from prefloop.label_config import PairwiseConfig
from prefloop.queue import JobKind
from prefloop.text import answers_of, render_prompt

logger = logging.getLogger(__name__)


def predict_tasks(ctx: Context, project_id: int, tasks: list[dict[str, Any]], config: PairwiseConfig) -> list[dict[str, Any]]:
    """One entry per task, in order. The pointer is read once, so the model that scores and the
    `model_version` every entry carries (the same one /setup answers) cannot disagree mid-request."""
    deadline = time.monotonic() + ctx.settings.predict_time_budget  # model loading counts too
    current = ctx.store.current(project_id)
    model_version = serving_version(current)
    results: list[dict[str, Any]] = [{"model_version": model_version} for _ in tasks]
    ready: list[tuple[int, str, str, str]] = []  # (index, prompt, left, right)
    missing = 0
    for i, task in enumerate(tasks):
        answers = answers_of(task["data"], config)
        if answers is None:
            missing += 1
            continue
        try:
            prompt = render_prompt(task["data"], config, ctx.settings.chat_template)
        except InputError as exc:
            logger.warning("task %s cannot be scored: %s", task.get("id"), exc)
            continue
        ready.append((i, prompt, *answers))
    if missing:
        _queue_generation(ctx, project_id, missing)
    if current.get("reward") is None or not ready:
        return results
    scorer = reward_scorer(ctx, project_id, current["reward"])
    picks = scorer.prefer([r[1] for r in ready], [r[2] for r in ready], [r[3] for r in ready], deadline=deadline)
    for (i, *_), pick in zip(ready, picks):
        if pick is None:  # out of time: no result, so Label Studio stores nothing and asks again later
            continue
        selected, prob = pick
        results[i]["score"] = round(prob, 4)
        results[i]["result"] = [{
            "from_name": config.from_name, "to_name": config.from_name, "type": "pairwise",
            "value": {"selected": selected},
        }]
    unscored = sum(p is None for p in picks)
    if unscored:
        logger.warning("predict for project %s: %d of %d pairs not scored within PREDICT_TIME_BUDGET=%ss",
                       project_id, unscored, len(picks), ctx.settings.predict_time_budget)
    return results


def reward_scorer(ctx: Context, project_id: int, version: str | None = None):
    """A reward model of a project (the serving one when `version` is None), loaded once per process.
    Two slots per project: the serving version, swapped when the pointer moves (the cache reloads
    when the path changes), and one other version asked for by name (/reward), so a request for an
    old version never evicts the serving model."""
    from prefloop.scoring import RewardScorer

    serving = ctx.store.current(project_id).get("reward")
    version = version or serving
    if version is None:
        raise ModelNotFound(f"project {project_id} has no reward model yet: annotate some pairs and press Train "
                            f"(or run `prefloop train-reward --project {project_id}`)")
    path = ctx.store.version_dir(project_id, "reward", version)
    slot = "serving" if version == serving else "named"
    return ctx.models.get(("reward", project_id, slot), path, lambda p: RewardScorer(
        p, device=ctx.settings.device, batch_size=ctx.settings.predict_batch_size))


def _queue_generation(ctx: Context, project_id: int, missing: int) -> None:
    try:
        enqueued = ctx.queue.enqueue(JobKind.GENERATE, project_id, reason=f"predict: {missing} task(s) without answers",
                                     rate_limited=False)
        logger.info("generation for project %s: %s", project_id, enqueued.as_dict())
    except QueueUnavailable as exc:  # predictions still answer; the next /predict tries again
        logger.warning("could not queue generation for project %s: %s", project_id, exc)
