"""Predictions pushed, not pulled: the worker scores tasks with the serving reward model and writes
the picks into Label Studio, so the Data Manager shows the current model's pick and confidence
without anyone pressing "Retrieve Predictions", and /predict never scores in the web tier.

When it runs:
- after a reward model is published (worker/reward/job.py): every task with both answers;
- after a policy is published (worker/trainers/contract.py): the serving `model_version`
  ("rm-...+pi-...") changed, so every task is re-labelled; the picks are reused (same reward model);
- after each generation chunk (worker/prefill.py): the tasks that chunk filled, replacing any
  prediction prefloop wrote for their previous answers;
- as a PREDICT job, queued by /predict when Label Studio asks about a task nobody scored yet, and
  by the generation job when tasks were imported with their answers (`queue_unpredicted`).

Each prediction is {"task", "result": a Pairwise region, "score": probability of the pick,
"model_version": exactly what /setup answers}; in a ranking project the result is a Ranker region
holding the model's order of the task's answers, best first, and the score its confidence in the
closest adjacent step, so annotators drag only where they disagree with it. Afterwards the
project's `model_version` is set to that version (Label Studio 1.23.2 counts only those
predictions in the "Prediction score" column, ordering by it and "Uncertainty sampling"), and
prefloop's predictions of older versions are deleted. Predictions of other models (imported by
users) are never touched.

A push that fails (Label Studio down) never fails the job that published a model: it is logged,
reported in the job's result and retried as a PREDICT job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from prefloop.artifacts import ArtifactStore, serving_version
from prefloop.errors import LabelConfigError, LabelStudioError, LabelStudioUnavailable, QueueUnavailable, UnknownProject
from prefloop.family import Conversation
from prefloop.jobkinds import JobKind
from prefloop.label_config import LabelConfig, RankingConfig, parse_label_config, ranking_ids
from prefloop.labelstudio import LabelStudioClient
from prefloop.prediction_store import (
    Pick,
    PickStore,
    is_serving_version,
    prediction_result,
    ranking_selection,
    task_comparison,
    too_long,
)
from prefloop.queue import JobQueue
from prefloop.settings import Settings
from prefloop.text import has_answers

logger = logging.getLogger(__name__)

IMPORT_BATCH = 500
"""Predictions per bulk import request (Label Studio processes imports in batches of 500 itself)."""
SCORE_CHUNK = 256
"""Pairs scored between two progress reports."""


def push_predictions(
    settings: Settings,
    project_id: int,
    *,
    client: LabelStudioClient | None = None,
    queue: JobQueue | None = None,
    tasks: Iterable[dict[str, Any]] | None = None,
    replace: bool = False,
    reason: str = "",
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """Score and write predictions for `tasks` (default: every task of the project, read with their
    predictions). A task that already holds a prediction of the serving version is left alone,
    unless `replace` (its answers were just rewritten): then prefloop's predictions of that task
    are deleted and a new one written."""
    started = time.monotonic()
    store = ArtifactStore(settings.model_dir)
    current = store.current(project_id)
    reward = current.get("reward")
    if not reward:
        return {"status": "skipped", "reason": "no reward model yet: nothing to predict with"}
    model_version = serving_version(current)
    client = client or LabelStudioClient(settings)
    queue = queue or JobQueue(settings)
    picks = PickStore(queue.connection, settings.queue_prefix)
    config = parse_label_config(client.get_label_config(project_id))  # pairwise or ranking
    todo: list[tuple[dict[str, Any], str, Conversation, tuple[str, ...]]] = []  # (task, key, prompt, answers)
    counts = {"tasks": 0, "without_answers": 0, "too_long": 0, "already_current": 0}
    for task in client.iter_tasks(project_id, fields="all") if tasks is None else tasks:
        counts["tasks"] += 1
        if too_long(task.get("data") or {}, config, settings.max_text_chars):
            counts["too_long"] += 1
            continue
        comparison = task_comparison(task.get("data") or {}, config, settings.chat_template)
        if comparison is None:
            counts["without_answers"] += 1
            continue
        if not replace and any(p.get("model_version") == model_version for p in _predictions(task)):
            counts["already_current"] += 1
            continue
        todo.append((task, *comparison))
    found = picks.get_many(project_id, reward, [t[1] for t in todo])
    missing = [i for i, pick in enumerate(found) if pick is None]
    scoring_started, scoring_cpu = time.monotonic(), time.process_time()
    if missing:
        source = store.version_dir(project_id, "reward", reward)
        items = [(todo[i][2], todo[i][3], _item_ids(todo[i][0], config)) for i in missing]
        scored = _score(settings, source, items, progress)
        picks.put_many(project_id, reward, {todo[i][1]: pick for i, pick in zip(missing, scored, strict=True)})
        for i, new_pick in zip(missing, scored, strict=True):
            found[i] = new_pick
    scoring_s, scoring_cpu_s = time.monotonic() - scoring_started, time.process_time() - scoring_cpu
    deleted_for_replace = _delete_task_predictions(client, [t[0] for t in todo]) if replace else 0
    rows = []
    for (task, *_), pick in zip(todo, found, strict=True):
        assert pick is not None
        rows.append(
            {
                "task": task["id"],
                "result": prediction_result(config, pick[0]),
                "score": round(pick[1], 4),
                "model_version": model_version,
            }
        )
    if progress:
        progress(0, len(rows), "writing predictions to Label Studio")
    written = 0
    for start in range(0, len(rows), IMPORT_BATCH):
        batch = rows[start : start + IMPORT_BATCH]
        created = client.import_predictions(project_id, batch)
        written += created
        if created != len(batch):
            logger.warning("Label Studio created %d of %d predictions for project %s", created, len(batch), project_id)
        if progress:
            progress(start + len(batch), len(rows), "writing predictions to Label Studio")
    versions = client.model_versions(project_id)
    follow = _follow_version(client, project_id, model_version, versions)
    old = [v for v in versions if v != model_version and is_serving_version(v)]
    deleted_old = sum(client.delete_model_version(project_id, v) for v in old)
    picks.drop_other_versions(project_id, reward)
    result = {
        "status": "done",
        "reason": reason,
        "model_version": model_version,
        **counts,
        "scored": len(missing),
        "reused": len(todo) - len(missing),
        "written": written,
        "project_model_version": follow,
        "deleted_old_predictions": deleted_old,
        "deleted_replaced_predictions": deleted_for_replace,
        "seconds": round(time.monotonic() - started, 2),
        "scoring_s": round(scoring_s, 2),
        "scoring_cpu_s": round(scoring_cpu_s, 2),
        "writing_s": round(time.monotonic() - scoring_started - scoring_s, 2),
    }
    logger.info("predictions for project %s: %s", project_id, {k: v for k, v in result.items() if k != "reason"})
    return result


def push_after(settings: Settings, project_id: int, what: str, **kwargs: Any) -> dict[str, Any]:
    """`push_predictions` after `what` (a publish, a generation chunk), never raising (the model is
    published already; failing its job would only retrain it): on failure it logs, returns
    {"status": "failed", "error": ...} for the job's result and, when Label Studio or Redis was
    unreachable, queues a PREDICT job to try again."""
    try:
        return push_predictions(settings, project_id, reason=what, **kwargs)
    except Exception as exc:
        transient = isinstance(exc, (LabelStudioUnavailable, QueueUnavailable, redis.RedisError, OSError))
        if transient or isinstance(exc, (LabelStudioError, UnknownProject, LabelConfigError)):
            logger.warning("predictions for project %s after %s not written: %s", project_id, what, exc)
        else:
            logger.exception("predictions for project %s after %s failed", project_id, what)
        out: dict[str, Any] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        if not transient:
            return out
        try:
            again = JobQueue(settings).enqueue(JobKind.PREDICT, project_id, reason=f"retry after {what}")
            out["retry"] = again.as_dict()
        except QueueUnavailable as down:
            out["retry"] = {"error": str(down)}
        return out


def queue_unpredicted(
    settings: Settings,
    queue: JobQueue,
    project_id: int,
    tasks: Iterable[dict[str, Any]],
    config: LabelConfig,
    skip: set[int],
) -> dict[str, Any] | None:
    """Tasks imported with their answers need no generation, so no chunk pushes their predictions:
    once a reward model serves, queue one PREDICT job when some task outside `skip` (the chunk being
    generated) has both answers and no prediction at all. Returns the enqueued job, or None."""
    if not ArtifactStore(settings.model_dir).current(project_id).get("reward"):
        return None
    waiting = sum(
        1
        for t in tasks
        if t["id"] not in skip and not t.get("total_predictions") and has_answers(t.get("data") or {}, config)
    )
    if not waiting:
        return None
    reason = f"{waiting} task(s) with answers and no prediction"
    return queue.enqueue(JobKind.PREDICT, project_id, reason=reason).as_dict()


def _predictions(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in task.get("predictions") or [] if isinstance(p, dict)]


def _item_ids(task: dict[str, Any], config: LabelConfig) -> list[str] | None:
    """A ranking task's List item ids (what its Ranker prediction names); None for a pair."""
    return ranking_ids(task["data"], config) if isinstance(config, RankingConfig) else None


def _score(
    settings: Settings,
    source: Any,
    items: list[tuple[Conversation, tuple[str, ...], list[str] | None]],
    progress: Callable[[int, int, str], None] | None,
) -> list[Pick]:
    """For each (prompt, answers, item ids): a pair's pick ("left"/"right", its probability), or, for
    a ranking (item ids given; a ranking of two is still an order), the ids in the model's order with
    its confidence (prefloop/prediction_store.py). One project's items are all of one kind."""
    from prefloop.scoring import RewardScorer

    scorer = RewardScorer(source, device=settings.device, batch_size=settings.predict_batch_size)
    out: list[Pick] = []
    for start in range(0, len(items), SCORE_CHUNK):
        part = items[start : start + SCORE_CHUNK]
        if part[0][2] is None:  # pairs: both sides in one batch
            out += scorer.prefer([p for p, _, _ in part], [a[0] for _, a, _ in part], [a[1] for _, a, _ in part])
        else:
            ranked = scorer.rank([p for p, _, _ in part], [answers for _, answers, _ in part])
            out += [
                (ranking_selection(order, ids or []), confidence)
                for (_, _, ids), (order, confidence) in zip(part, ranked, strict=True)
            ]
        if progress:
            progress(len(out), len(items), "scoring tasks")
    return out


def _delete_task_predictions(client: LabelStudioClient, tasks: list[dict[str, Any]]) -> int:
    """Delete prefloop's predictions of these tasks (their answers changed). Tasks read without their
    predictions (fields="task_only", as generation reads them) are asked for them only when Label
    Studio counted some."""
    deleted = 0
    for task in tasks:
        found = (
            _predictions(task)
            if "predictions" in task
            else (client.task_predictions(task["id"]) if task.get("total_predictions") else [])
        )
        for prediction in found:
            if is_serving_version(str(prediction.get("model_version") or "")):
                client.delete_prediction(prediction["id"])
                deleted += 1
    return deleted


def _follow_version(
    client: LabelStudioClient, project_id: int, model_version: str, versions: dict[str, int]
) -> str | None:
    """Point the project's `model_version` at the serving version (only possible once predictions of
    it exist); returns the project's value afterwards."""
    project = client.get_project(project_id)
    if project.get("model_version") == model_version or model_version not in versions:
        return project.get("model_version")
    client.update_project(project_id, model_version=model_version)
    return model_version
