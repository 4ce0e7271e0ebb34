"""The job contract every policy trainer keeps (PPO, DPO, GRPO, RLOO).

- Bad input never fails a job (RQ would retry it into a crash loop): the job returns
  `skipped(...)`, {"status": "skipped", "trainer": ..., "reason": ...}, which `/jobs`, the status
  page and `prefloop jobs` show.
- The run starts from the project's current policy (or BASE_MODEL), trains into
  `ArtifactStore.staging()` and `publish()`es the directory only when the run finished: a failed or
  killed run publishes nothing and the previous policy keeps serving.
- The result names the trainer, the version, where it started, and the summary metrics; with
  REGENERATE_AFTER_PPO (any trainer) a regeneration of unannotated tasks is queued behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prefloop.artifacts import BASE_POLICY, ArtifactStore, read_json
from prefloop.errors import InputError, QueueUnavailable
from prefloop.models import read_base_model_name
from prefloop.settings import Settings

logger = logging.getLogger(__name__)


def skipped(trainer: str, project_id: int, reason: str, **extra: Any) -> dict[str, Any]:
    logger.warning("%s for project %s skipped: %s", trainer.upper(), project_id, reason)
    return {"status": "skipped", "trainer": trainer, "reason": reason, **extra}


def reward_accuracy(metrics: Any) -> float | None:
    """The held-out pairwise accuracy a reward version's metrics.json records (worker.reward.report)."""
    value = metrics.get("eval/accuracy") if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def same_model(a: str | None, b: str | None) -> bool:
    """Two base-model names refer to one model: equal names, or the same local directory."""
    if not a or not b:
        return False
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def missing_adapter_base(source: str | Path) -> str | None:
    """The base a published LoRA adapter names when it is a local path that no longer exists, else None."""
    from prefloop.models import adapter_base, is_adapter

    if not is_adapter(source):
        return None
    base = adapter_base(source)
    looks_local = base.startswith(("/", ".")) or Path(base).is_absolute()
    return base if looks_local and not Path(base).exists() else None


def starting_policy(settings: Settings, store: ArtifactStore, project_id: int) -> dict[str, Any]:
    """{policy_source, policy_version (None: the base), base_model} of the policy a run starts from."""
    version = store.current(project_id).get("policy")
    source = str(store.kind_dir(project_id, "policy") / version) if version else settings.base_model
    base = (read_base_model_name(source) if version else None) or settings.base_model
    return {"policy_source": source, "policy_version": version, "base_model": base}


def check_reward(
    settings: Settings, store: ArtifactStore, project_id: int, force: bool, trainer: str = "ppo"
) -> tuple[dict[str, Any] | None, str | None]:
    """For the trainers that optimise the reward model (PPO, GRPO, RLOO):
    ({reward_dir, reward_version, reward_accuracy, policy_source, policy_version, base_model}, None)
    or (None, the reason to skip)."""
    name = trainer.upper()
    reward = store.current(project_id).get("reward")
    if not reward:
        return None, (
            f"no reward model yet: {name} optimises the reward model's score; annotate pairs and train "
            "one first (Train in Label Studio, or wait for MIN_NEW_ANNOTATIONS annotations)"
        )
    reward_dir = store.kind_dir(project_id, "reward") / reward
    accuracy = reward_accuracy(read_json(reward_dir / "metrics.json"))
    if not force and (accuracy is None or accuracy < settings.ppo_min_accuracy):
        shown = "unknown" if accuracy is None else f"{accuracy:.3f}"
        return None, (
            f"reward model {reward} has eval accuracy {shown}, below PPO_MIN_ACCURACY="
            f"{settings.ppo_min_accuracy}: collect more annotations, or lower PPO_MIN_ACCURACY, or queue "
            f"with `prefloop train-policy --trainer {trainer} --force`"
        )
    start = starting_policy(settings, store, project_id)
    # The reward model scores the policy's decoded text through its own tokenizer (prefloop.family), so
    # its backbone need not be the policy's. What still matters: a LoRA version loads onto its base.
    for what, source in (("reward model " + reward, reward_dir), ("policy", start["policy_source"])):
        missing = missing_adapter_base(source)
        if missing:
            return None, (
                f"{what} is a LoRA adapter on base model {missing!r}, which is not there any more: "
                "restore that directory (or retrain)"
            )
    return {"reward_dir": reward_dir, "reward_version": reward, "reward_accuracy": accuracy, **start}, None


def read_prompts(settings: Settings, project_id: int, *, conversations: bool = False) -> tuple[list[Any], int]:
    """The distinct prompts of the project's tasks (rendered text, or with `conversations` the
    prefloop.family Conversations each trainer renders for its own model), and how many tasks
    were unusable."""
    from prefloop.label_config import parse_label_config
    from prefloop.labelstudio import LabelStudioClient
    from prefloop.text import render_prompt, task_conversation

    client = LabelStudioClient(settings)
    config = parse_label_config(client.get_label_config(project_id))  # pairwise or ranking: prompts alike
    prompts: dict[Any, None] = {}
    bad = 0
    for task in client.iter_tasks(project_id, fields="all"):
        data = task.get("data") or {}
        try:
            prompt = (
                task_conversation(data, config)
                if conversations
                else render_prompt(data, config, settings.chat_template)
            )
        except InputError:
            bad += 1
            continue
        prompts[prompt] = None
    return list(prompts), bad


def no_prompts(trainer: str, project_id: int, bad: int) -> dict[str, Any]:
    return skipped(
        trainer,
        project_id,
        f"no prompts: project {project_id} has no task with a usable prompt ({bad} unusable); import tasks first",
    )


def knobs(
    config_cls: Any, trainer: str, project_id: int, overrides: Mapping[str, Any]
) -> tuple[Any, dict[str, Any] | None]:
    """(config, None), or (None, a skip result naming the bad knob)."""
    try:
        return config_cls.from_overrides(dict(overrides)), None
    except InputError as exc:
        return None, skipped(trainer, project_id, str(exc))


def train_and_publish(
    settings: Settings,
    store: ArtifactStore,
    project_id: int,
    trainer: str,
    train: Callable[[Path], dict[str, Any]],
    **result: Any,
) -> dict[str, Any]:
    """Run `train(staging_dir) -> metrics`, publish the directory as a new policy version, and
    return the job result (plus the regeneration REGENERATE_AFTER_PPO asks for)."""
    with store.staging(project_id, "policy") as staged:
        metrics = train(staged)
        version = store.publish(project_id, "policy", staged)
    out = {
        "status": "published",
        "trainer": trainer,
        "version": version,
        "model_version": store.model_version(project_id),
        **result,
        "metrics": {k: v for k, v in metrics.items() if k != "history"},
    }
    out["started_from"] = out.pop("policy_version", None) or BASE_POLICY
    from worker.predictions import push_after  # the serving model_version changed: re-label the picks

    out["predictions"] = push_after(settings, project_id, f"policy {version}")
    if settings.regenerate_after_ppo:
        out["regenerate"] = queue_regeneration(settings, project_id, version)
    logger.info(
        "%s for project %s published %s (KL %.3f)", trainer.upper(), project_id, version, metrics.get("final_kl") or 0.0
    )
    return out


def queue_regeneration(settings: Settings, project_id: int, version: str) -> dict[str, Any]:
    from prefloop.jobkinds import JobKind
    from prefloop.queue import JobQueue

    try:
        return (
            JobQueue(settings)
            .enqueue(JobKind.GENERATE, project_id, reason=f"policy {version} published", regenerate=True)
            .as_dict()
        )
    except QueueUnavailable as exc:
        logger.warning("could not queue regeneration after %s: %s", version, exc)
        return {"error": str(exc)}
