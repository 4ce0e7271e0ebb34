"""The reward-model training job: Label Studio's current annotations -> a published reward-model
version -> (if good enough) a PPO job queued behind it.

It reads everything from Label Studio (webhooks only trigger it), skips when too little changed
since the last version (unless forced: the Train button, `prefloop train-reward`) or when there
are too few pairs, trains into a staging directory and publishes it atomically. A run that fails
or is killed publishes nothing, and the previous version keeps serving.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

from prefloop.artifacts import ArtifactStore, write_json
from prefloop.errors import InputError, JobSkipped
from prefloop.label_config import PairwiseConfig, parse_pairwise_config
from prefloop.labelstudio import LabelStudioClient
from prefloop.preferences import count_changes, tasks_to_pairs
from prefloop.queue import JobKind, JobQueue
from prefloop.settings import Settings
from prefloop.text import answers_of, render_prompt
from worker.reward.config import RewardTrainConfig
from worker.reward.train import train_reward
from worker.runtime import Progress

logger = logging.getLogger(__name__)


def config_from_settings(settings: Settings, overrides: Mapping[str, Any] | None = None) -> RewardTrainConfig:
    values = {"learning_rate": settings.reward_learning_rate, "num_train_epochs": settings.reward_epochs,
              "per_device_train_batch_size": settings.reward_batch_size, "tracking": settings.reward_tracking,
              "device": settings.device}
    values.update(overrides or {})
    return RewardTrainConfig.from_overrides(values)


def last_seen(store: ArtifactStore, project_id: int) -> dict[str, str]:
    """Annotation snapshot (id -> updated_at) of the newest published reward model."""
    versions = store.versions(project_id, "reward")
    if not versions:
        return {}
    try:
        data = json.loads((store.kind_dir(project_id, "reward") / versions[-1]["version"] / "data.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return dict(data.get("annotations_seen") or {})


def run(settings: Settings, project_id: int, *, reason: str, forced: bool, queue: JobQueue | None = None,
        config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    progress = Progress("reading annotations")
    queue = queue or _job_queue(settings)
    store = ArtifactStore(settings.model_dir)
    store.sweep_staging(project_id)
    client = LabelStudioClient(settings)
    pairwise = parse_pairwise_config(client.get_label_config(project_id))
    tasks = list(client.iter_tasks(project_id, fields="all"))
    pairs, summary = tasks_to_pairs(tasks, pairwise, settings.chat_template)
    changes = count_changes(last_seen(store, project_id), summary.seen)
    logger.info("project %s: %s; %d annotation change(s) since the last version", project_id,
                summary.describe().replace("\n", ";"), changes)
    base = {"project_id": project_id, "reason": reason, "forced": forced, "changes": changes, "pairs": len(pairs),
            "conversion": summary.as_dict()}
    if not forced and changes < settings.min_new_annotations:
        progress.update(0, stage="skipped", force=True)
        return {"status": "skipped", **base,
                "reason": f"{changes} new or changed annotation(s) since the last reward model, fewer than "
                          f"MIN_NEW_ANNOTATIONS={settings.min_new_annotations} (the Train button trains anyway)"}
    train_config = config_from_settings(settings, config)

    def report(done: int, total: int, stage: str) -> None:
        progress.total = total
        progress.update(done, stage=stage, force=done in (0, total))

    try:
        with store.staging(project_id, "reward") as staged:
            metrics = train_reward(pairs, settings.base_model, staged, train_config, progress=report,
                                   conversion={**summary.as_dict(), "seen": summary.seen})
            if settings.precompute_predictions:
                _precompute(settings, staged, tasks, pairwise, report)
            progress.update(1, stage="publishing", force=True)
            version = store.publish(project_id, "reward", staged)
    except JobSkipped as exc:
        progress.update(0, stage="skipped", force=True)
        return {"status": "skipped", **base, "reason": str(exc)}
    result = {"status": "published", **base, "version": version, "metrics": metrics,
              "model_version": store.model_version(project_id)}
    result["ppo"] = _queue_ppo(settings, queue, project_id, version, metrics)
    progress.update(1, stage="done", force=True)
    return result


def _precompute(settings: Settings, staged: Path, tasks: list[dict], pairwise: PairwiseConfig, report) -> None:
    """Score every task with both answers once, here on the worker, into the version's predictions.json."""
    from prefloop.scoring import PREDICTIONS_FILE, RewardScorer, precompute_predictions

    items = {}
    for task in tasks:
        data = task.get("data") or {}
        answers = answers_of(data, pairwise)
        if answers is None:
            continue
        try:
            items[(render_prompt(data, pairwise, settings.chat_template), *answers)] = None
        except InputError:
            continue
    scorer = RewardScorer(staged, device=settings.device, batch_size=settings.predict_batch_size)
    predictions = precompute_predictions(scorer, list(items),
                                         progress=lambda done, total: report(done, total, "precomputing predictions"))
    write_json(staged / PREDICTIONS_FILE, {"count": len(predictions), "predictions": predictions})


def _job_queue(settings: Settings) -> JobQueue:
    from rq import get_current_job

    job = get_current_job()
    return JobQueue(settings, connection=job.connection if job is not None else None)


def _queue_ppo(settings: Settings, queue: JobQueue, project_id: int, version: str, metrics: Mapping[str, Any]) -> dict:
    accuracy = metrics.get("eval/accuracy") or 0.0
    if accuracy < settings.ppo_min_accuracy:
        logger.info("reward model %s: eval accuracy %.3f < PPO_MIN_ACCURACY %.3f, no PPO run", version, accuracy,
                    settings.ppo_min_accuracy)
        return {"queued": False, "reason": f"eval accuracy {accuracy:.3f} < PPO_MIN_ACCURACY {settings.ppo_min_accuracy}"}
    enqueued = queue.enqueue(JobKind.PPO, project_id, reason=f"reward model {version} (eval accuracy {accuracy:.3f})",
                             reward_version=version)
    return {"queued": True, **enqueued.as_dict()}
