"""/predict: one entry per task, in order.

Until a reward model is published, entries carry no `result`, so Label Studio stores nothing and asks
again later. Afterwards each task with both answers gets the reward model's pick as a Pairwise
result with `score` = the probability of that pick, so annotators can sort by score and label the
least certain pairs first. Tasks whose answers are still missing get no result, and generation for
the project is queued (coalesced) so they get answers.
"""

from __future__ import annotations

import logging
from typing import Any

from backend.app import Context
from prefloop.errors import InputError, QueueUnavailable
from prefloop.label_config import PairwiseConfig
from prefloop.queue import JobKind
from prefloop.text import answers_of, render_prompt

logger = logging.getLogger(__name__)


def predict_tasks(ctx: Context, project_id: int, tasks: list[dict[str, Any]], config: PairwiseConfig) -> list[dict[str, Any]]:
    model_version = ctx.store.model_version(project_id)
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
    scorer = reward_scorer(ctx, project_id)
    if scorer is None or not ready:
        return results
    picks = scorer.prefer([r[1] for r in ready], [r[2] for r in ready], [r[3] for r in ready])
    for (i, *_), (selected, prob) in zip(ready, picks):
        results[i]["score"] = round(prob, 4)
        results[i]["result"] = [{
            "from_name": config.from_name, "to_name": config.from_name, "type": "pairwise",
            "value": {"selected": selected},
        }]
    return results


def reward_scorer(ctx: Context, project_id: int, version: str | None = None):
    """The serving (or a named) reward model of a project, loaded once per process and swapped when
    the pointer moves; None while no reward model exists."""
    from prefloop.scoring import RewardScorer

    path = (ctx.store.version_dir(project_id, "reward", version) if version
            else ctx.store.current_path(project_id, "reward"))
    if path is None:
        return None
    return ctx.models.get(("reward", project_id, version), path, lambda p: RewardScorer(
        p, device=ctx.settings.device, batch_size=ctx.settings.predict_batch_size))


def _queue_generation(ctx: Context, project_id: int, missing: int) -> None:
    try:
        enqueued = ctx.queue.enqueue(JobKind.GENERATE, project_id, reason=f"predict: {missing} task(s) without answers",
                                     rate_limited=False)
        logger.info("generation for project %s: %s", project_id, enqueued.as_dict())
    except QueueUnavailable as exc:  # predictions still answer; the next /predict tries again
        logger.warning("could not queue generation for project %s: %s", project_id, exc)
