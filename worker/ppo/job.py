"""The PPO job of a project: check the inputs, read the prompts from Label Studio, train into a
staging directory, publish a new policy version atomically, optionally queue a regeneration.

Bad input never fails the job (RQ would retry it into a crash loop): it returns
{"status": "skipped", "reason": ...}, which `/jobs`, the status page and `prefloop jobs` show.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from prefloop.artifacts import ArtifactStore, read_json
from prefloop.errors import InputError, QueueUnavailable
from prefloop.models import read_base_model_name
from prefloop.settings import Settings
from worker.ppo.config import PPOConfig

logger = logging.getLogger(__name__)



def skipped(project_id: int, reason: str) -> dict[str, Any]:
    logger.warning("PPO for project %s skipped: %s", project_id, reason)
    return {"status": "skipped", "reason": reason}


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


def check_inputs(settings: Settings, store: ArtifactStore, project_id: int, force: bool) -> tuple[dict | None, str | None]:
    """({reward_dir, policy_source, base_model, reward_version, policy_version}, None) or (None, reason)."""
    current = store.current(project_id)
    if not current.get("reward"):
        return None, ("no reward model yet: annotate pairs and train one first (Train in Label Studio, "
                      "or wait for MIN_NEW_ANNOTATIONS annotations)")
    reward_dir = store.kind_dir(project_id, "reward") / current["reward"]
    metrics = read_json(reward_dir / "metrics.json")
    accuracy = reward_accuracy(metrics)
    if not force and (accuracy is None or accuracy < settings.ppo_min_accuracy):
        shown = "unknown" if accuracy is None else f"{accuracy:.3f}"
        return None, (f"reward model {current['reward']} has eval accuracy {shown}, below PPO_MIN_ACCURACY="
                      f"{settings.ppo_min_accuracy}: collect more annotations, or lower PPO_MIN_ACCURACY, or queue "
                      "with `prefloop train-ppo --force`")
    policy_version = current.get("policy")
    policy_source = str(store.kind_dir(project_id, "policy") / policy_version) if policy_version else settings.base_model
    policy_base = (read_base_model_name(policy_source) if policy_version else None) or settings.base_model
    reward_base = read_base_model_name(reward_dir)
    if not same_model(reward_base, policy_base):
        return None, (f"reward model {current['reward']} was trained from base model {reward_base!r}, but the "
                      f"policy is based on {policy_base!r}: retrain the reward model with BASE_MODEL={policy_base}")
    return {"reward_dir": reward_dir, "policy_source": policy_source, "base_model": policy_base,
            "reward_version": current["reward"], "policy_version": policy_version, "reward_accuracy": accuracy}, None


def read_prompts(settings: Settings, project_id: int) -> tuple[list[str], int]:
    """The distinct rendered prompts of the project's tasks, and how many tasks were unusable."""
    from prefloop.label_config import parse_pairwise_config
    from prefloop.labelstudio import LabelStudioClient
    from prefloop.text import render_prompt

    client = LabelStudioClient(settings)
    config = parse_pairwise_config(client.get_label_config(project_id))
    prompts: dict[str, None] = {}
    bad = 0
    for task in client.iter_tasks(project_id, fields="all"):
        try:
            prompts[render_prompt(task.get("data") or {}, config, settings.chat_template)] = None
        except InputError:
            bad += 1
    return list(prompts), bad


def ppo_job(settings: Settings, project_id: int, *, forced: bool = False, config: dict[str, Any] | None = None,
            force: bool = False, **_: Any) -> dict[str, Any]:
    from worker.runtime import Progress

    store = ArtifactStore(settings.model_dir)
    store.sweep_staging(project_id)
    inputs, reason = check_inputs(settings, store, project_id, force or forced)
    if inputs is None:
        return skipped(project_id, reason)
    prompts, bad = read_prompts(settings, project_id)
    if not prompts:
        return skipped(project_id, f"no prompts: project {project_id} has no task with a usable prompt "
                                   f"({bad} unusable); import tasks first")
    overrides = dict(config or {})
    overrides.setdefault("max_new_tokens", settings.max_new_tokens)
    try:
        ppo_config = PPOConfig.from_overrides(overrides)
    except InputError as exc:
        return skipped(project_id, str(exc))
    shown = random.Random(ppo_config.seed).sample(prompts, min(ppo_config.sample_prompts, len(prompts)))
    progress = Progress("ppo", total=ppo_config.steps)

    def on_step(step: int, m: dict[str, float]) -> None:
        progress.update(step + 1, kl=round(m["objective/kl"], 4), score=round(m["objective/scores"], 4))

    from worker.ppo.run import train_policy

    with store.staging(project_id, "policy") as staged:
        metrics = train_policy(
            prompts, policy_source=inputs["policy_source"], reward_source=inputs["reward_dir"], out_dir=staged,
            config=ppo_config, device=settings.device, base_model=inputs["base_model"], sample_prompts=shown,
            on_step=on_step, extra_config={"project_id": project_id, "reward_version": inputs["reward_version"],
                                           "policy_version": inputs["policy_version"], "base_model": inputs["base_model"]})
        progress.update(ppo_config.steps, stage="publishing", force=True)
        version = store.publish(project_id, "policy", staged)
    result = {"status": "published", "version": version, "model_version": store.model_version(project_id),
              "reward_version": inputs["reward_version"], "started_from": inputs["policy_version"] or "base",
              "prompts": len(prompts), "metrics": {k: v for k, v in metrics.items() if k != "history"}}
    if settings.regenerate_after_ppo:
        result["regenerate"] = queue_regeneration(settings, project_id, version)
    logger.info("PPO for project %s published %s (KL %.3f)", project_id, version, metrics.get("final_kl") or 0.0)
    return result


def queue_regeneration(settings: Settings, project_id: int, version: str) -> dict[str, Any]:
    from prefloop.queue import JobKind, JobQueue

    try:
        return JobQueue(settings).enqueue(JobKind.GENERATE, project_id, reason=f"policy {version} published",
                                          regenerate=True).as_dict()
    except QueueUnavailable as exc:
        logger.warning("could not queue regeneration after %s: %s", version, exc)
        return {"error": str(exc)}
