"""/predict: one entry per task, in order, answered from what the worker stored; never a model
call in the web tier.

The worker scores tasks and writes the predictions into Label Studio itself (worker/predictions.py)
after each reward model, policy and generation chunk, and keeps the picks in Redis
(prefloop/prediction_store.py). Label Studio only calls /predict for tasks that hold no prediction
of the serving `model_version` (a task opened before its push arrived, "Retrieve Predictions",
the labeling stream), and gets:
- a task the worker already scored: its pick as a Pairwise result, `score` = the probability of
  that pick (lowest = least certain), `model_version` = what /setup answers; in a ranking project
  the model's order as a Ranker result, `score` = its confidence in the closest adjacent step;
- a task with both answers that nobody scored yet: an empty list (Label Studio stores nothing and
  logs nothing, and asks again later), and one coalesced, rate-limited PREDICT job for the project
  (refused for a project prefloop does not serve), which scores it on the worker and writes it;
- a task still without answers: an empty list, and the project's generation is queued;
- a task with a prompt or answer over MAX_TEXT_CHARS: an empty list (logged), never hashed or scored;
- before the first reward model: an empty list for every task.

An entry without `result` would make Label Studio 1.23.2 log an ERROR for every opened task
(`ml/models.py`: "ML backend returns an incorrect prediction"); an empty list per task is its way
to say "no prediction", and the count of entries still matches the tasks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import redis

from backend.context import Context
from prefloop.artifacts import serving_version
from prefloop.errors import ModelNotFound, QueueUnavailable, UnknownProject
from prefloop.jobkinds import JobKind
from prefloop.label_config import LabelConfig
from prefloop.prediction_store import PickStore, prediction_result, task_comparison, too_long

if TYPE_CHECKING:
    from prefloop.scoring import RewardScorer  # imported lazily at run time (loads torch)

logger = logging.getLogger(__name__)


def predict_tasks(ctx: Context, project_id: int, tasks: list[dict[str, Any]], config: LabelConfig) -> list[Any]:
    """One entry per task, in order. The pointer is read once, so every entry carries the
    `model_version` /setup answers at this moment. A ranking project's entries are the model's
    order of the task's answers (a Ranker region)."""
    current = ctx.store.current(project_id)
    model_version = serving_version(current)
    results: list[Any] = [[] for _ in tasks]
    comparisons: list[tuple[int, str]] = []  # (index, comparison key)
    missing = too_long_count = 0
    for i, task in enumerate(tasks):
        if too_long(task["data"], config, ctx.settings.max_text_chars):
            too_long_count += 1
            continue
        comparison = task_comparison(task["data"], config, ctx.settings.chat_template)
        if comparison is None:
            missing += 1
        else:
            comparisons.append((i, comparison[0]))
    if too_long_count:
        logger.warning(
            "predict for project %s: %d task(s) with a text over MAX_TEXT_CHARS=%d get no prediction",
            project_id,
            too_long_count,
            ctx.settings.max_text_chars,
        )
    if missing:
        _queue(ctx, JobKind.GENERATE, project_id, f"predict: {missing} task(s) without answers")
    reward = current.get("reward")
    if reward is None or not comparisons:
        return results
    try:
        picks = PickStore(ctx.queue.connection, ctx.settings.queue_prefix).get_many(
            project_id, reward, [key for _, key in comparisons]
        )
    except redis.RedisError as exc:  # Redis down: no prediction now; Label Studio asks again later
        logger.warning("predict for project %s: stored picks unreadable: %s", project_id, exc)
        return results
    unscored = 0
    for (i, _), pick in zip(comparisons, picks, strict=True):
        if pick is None:
            unscored += 1
            continue
        results[i] = {
            "model_version": model_version,
            "score": round(pick[1], 4),
            "result": prediction_result(config, pick[0]),
        }
    if unscored:
        _queue(ctx, JobKind.PREDICT, project_id, f"predict: {unscored} task(s) not scored yet")
    return results


def reward_scorer(ctx: Context, project_id: int, version: str | None = None) -> RewardScorer:
    """A reward model of a project (the serving one when `version` is None), loaded once per process,
    for /reward (other tools asking for rewards; /predict never loads a model). Two slots per
    project: the serving version, swapped when the pointer moves (the cache reloads when the path
    changes), and one other version asked for by name, so a request for an old version never
    evicts the serving model."""
    from prefloop.scoring import RewardScorer

    serving = ctx.store.current(project_id).get("reward")
    version = version or serving
    if version is None:
        raise ModelNotFound(
            f"project {project_id} has no reward model yet: annotate some pairs and press Train "
            f"(or run `prefloop train-reward --project {project_id}`)"
        )
    path = ctx.store.version_dir(project_id, "reward", version)
    slot = "serving" if version == serving else "named"
    scorer = ctx.models.get(
        ("reward", project_id, slot),
        path,
        lambda p: RewardScorer(p, device=ctx.settings.device, batch_size=ctx.settings.predict_batch_size),
    )
    return cast("RewardScorer", scorer)  # ModelCache.get returns what `load` built


def _queue(ctx: Context, kind: JobKind, project_id: int, reason: str) -> None:
    """What a webhook would do (served projects only, coalesced, JOB_MIN_INTERVAL apart); a queue
    that is down or a project nobody connected only costs a log line: predictions still answer."""
    try:
        enqueued = ctx.queue.trigger(kind, project_id, reason=reason)
        logger.info("%s for project %s: %s", kind.value, project_id, enqueued.as_dict())
    except (QueueUnavailable, UnknownProject) as exc:
        logger.warning("could not queue %s for project %s: %s", kind.value, project_id, exc)
