"""The reward-model training job: Label Studio's current annotations -> a published reward-model
version -> (if good enough) a run of the configured policy trainer (POLICY_TRAINER) queued behind it.

It reads everything from Label Studio (webhooks only trigger it), skips when too little changed
since the newest version (MIN_NEW_ANNOTATIONS for annotation events; at least one change for the
Train button, `on_change`; nothing when forced: `prefloop train-reward --force`, an authenticated
/train) or when there are too few pairs, trains into a staging directory and publishes it atomically. A run that fails
or is killed publishes nothing, and the previous version keeps serving.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from prefloop.artifacts import ArtifactStore
from prefloop.errors import JobSkipped
from prefloop.family import LoraSettings
from prefloop.jobkinds import JobKind
from prefloop.label_config import parse_label_config
from prefloop.labelstudio import LabelStudioClient
from prefloop.preferences import count_changes, tasks_to_pairs
from prefloop.queue import JobQueue
from prefloop.settings import Settings
from worker.predictions import push_after
from worker.reward.config import RewardTrainConfig
from worker.reward.train import train_reward
from worker.runtime import Progress

logger = logging.getLogger(__name__)


def config_from_settings(settings: Settings, overrides: Mapping[str, Any] | None = None) -> RewardTrainConfig:
    values = {
        "learning_rate": settings.reward_lr,
        "num_train_epochs": settings.reward_epochs,
        "per_device_train_batch_size": settings.reward_batch_size,
        "tracking": settings.reward_tracking,
        "device": settings.device,
    }
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


def run(
    settings: Settings,
    project_id: int,
    *,
    reason: str,
    forced: bool,
    queue: JobQueue | None = None,
    config: Mapping[str, Any] | None = None,
    on_change: bool = False,
) -> dict[str, Any]:
    progress = Progress("reading annotations")
    queue = queue or _job_queue(settings)
    events_seen = _change_count(queue, project_id)  # before reading: later events make START_TRAINING queue again
    store = ArtifactStore(settings.model_dir, keep_versions=settings.keep_versions)
    store.sweep_staging(project_id)
    client = LabelStudioClient(settings)
    pairwise = parse_label_config(client.get_label_config(project_id))  # pairwise or ranking
    tasks = list(client.iter_tasks(project_id, fields="all"))
    pairs, summary = tasks_to_pairs(tasks, pairwise, settings.chat_template)
    changes = count_changes(last_seen(store, project_id), summary.seen)
    logger.info(
        "project %s: %s; %d annotation change(s) since the last version",
        project_id,
        summary.describe().replace("\n", ";"),
        changes,
    )
    base = {
        "project_id": project_id,
        "reason": reason,
        "forced": forced,
        "changes": changes,
        "pairs": len(pairs),
        "conversion": summary.as_dict(),
    }
    if changes == 0:
        _mark_trained(queue, project_id, events_seen)
    needed = 0 if forced else 1 if on_change else settings.min_new_annotations
    if changes < needed:
        progress.update(0, stage="skipped", force=True)
        why = (
            f"fewer than MIN_NEW_ANNOTATIONS={settings.min_new_annotations} (the Train button trains on any change)"
            if needed > 1
            else "nothing to learn from (`prefloop train-reward --force` trains anyway)"
        )
        return {
            "status": "skipped",
            **base,
            "reason": f"{changes} new, changed or deleted annotation(s) since the last reward model: {why}",
        }
    train_config = config_from_settings(settings, config)

    def report(done: int, total: int, stage: str) -> None:
        progress.total = total
        progress.update(done, stage=stage, force=done in (0, total))

    try:
        with store.staging(project_id, "reward") as staged:
            metrics = train_reward(
                pairs,
                settings.reward_base,
                staged,
                train_config,
                progress=report,
                conversion={**summary.as_dict(), "seen": summary.seen, "votes": summary.votes},
                chat_template=settings.chat_template,
                lora=LoraSettings.from_settings(settings),
            )
            progress.update(1, stage="publishing", force=True)
            version = store.publish(project_id, "reward", staged)
    except JobSkipped as exc:
        progress.update(0, stage="skipped", force=True)
        return {"status": "skipped", **base, "reason": str(exc)}
    _mark_trained(queue, project_id, events_seen)
    result = {
        "status": "published",
        **base,
        "version": version,
        "metrics": metrics,
        "model_version": store.model_version(project_id),
    }
    # Before the policy run is queued (it would run first on a one-worker queue): the new model's picks,
    # in Label Studio.
    result["predictions"] = push_after(
        settings, project_id, f"reward model {version}", client=client, queue=queue, progress=report
    )
    result["policy"] = _queue_policy(settings, queue, project_id, version, metrics)
    progress.update(1, stage="done", force=True)
    return result


def _change_count(queue: JobQueue, project_id: int) -> int | None:
    try:
        return queue.change_count(project_id)
    except Exception as exc:  # Redis trouble costs only the START_TRAINING shortcut
        logger.warning("annotation-change count of project %s not read: %s", project_id, exc)
        return None


def _mark_trained(queue: JobQueue, project_id: int, events_seen: int | None) -> None:
    if events_seen is None:
        return
    try:
        queue.mark_trained(project_id, events_seen)
    except Exception as exc:
        logger.warning("project %s: could not record the clean reward-model run: %s", project_id, exc)


def _job_queue(settings: Settings) -> JobQueue:
    from rq import get_current_job

    job = get_current_job()
    return JobQueue(settings, connection=job.connection if job is not None else None)


def _queue_policy(
    settings: Settings, queue: JobQueue, project_id: int, version: str, metrics: Mapping[str, Any]
) -> dict[str, Any]:
    """Queue the configured policy trainer (POLICY_TRAINER) behind a good enough reward model. DPO
    does not train on the reward model: annotation events queue it (backend/webhook.py)."""
    trainer = settings.policy_trainer
    if trainer == "dpo":
        return {
            "queued": False,
            "trainer": trainer,
            "reason": "POLICY_TRAINER=dpo trains on the pairs, not the reward model: annotation events queue it",
        }
    accuracy = metrics.get("eval/accuracy") or 0.0
    if accuracy < settings.ppo_min_accuracy:
        logger.info(
            "reward model %s: eval accuracy %.3f < PPO_MIN_ACCURACY %.3f, no %s run",
            version,
            accuracy,
            settings.ppo_min_accuracy,
            trainer.upper(),
        )
        return {
            "queued": False,
            "trainer": trainer,
            "reason": f"eval accuracy {accuracy:.3f} < PPO_MIN_ACCURACY {settings.ppo_min_accuracy}",
        }
    enqueued = queue.enqueue(
        JobKind.POLICY,
        project_id,
        reason=f"reward model {version} (eval accuracy {accuracy:.3f})",
        trainer=trainer,
        reward_version=version,
    )
    return {"queued": True, "trainer": trainer, **enqueued.as_dict()}
