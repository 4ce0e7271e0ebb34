"""The PPO job of a project: check the inputs, read the prompts from Label Studio, train into a
staging directory, publish a new policy version atomically, optionally queue a regeneration.

The contract (skip with a reason, atomic publish, the result's shape) is the one every policy
trainer shares: worker/trainers/contract.py.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, cast

from prefloop.artifacts import ArtifactStore
from prefloop.family import LoraSettings
from prefloop.settings import Settings
from worker.ppo.config import PPOConfig
from worker.trainers import contract


def ppo_job(
    settings: Settings,
    project_id: int,
    *,
    forced: bool = False,
    config: dict[str, Any] | None = None,
    force: bool = False,
    **_: Any,
) -> dict[str, Any]:
    from worker.runtime import Progress

    store = ArtifactStore(settings.model_dir, keep_versions=settings.keep_versions)
    store.sweep_staging(project_id)
    inputs, reason = contract.check_reward(settings, store, project_id, force or forced, "ppo")
    if inputs is None:
        return contract.skipped("ppo", project_id, cast(str, reason))  # no inputs: always a reason
    prompts, bad = contract.read_prompts(settings, project_id, conversations=True)
    if not prompts:
        return contract.no_prompts("ppo", project_id, bad)
    ppo_config, skip = contract.knobs(
        PPOConfig, "ppo", project_id, {"max_new_tokens": settings.max_new_tokens, **(config or {})}
    )
    if skip:
        return skip
    shown = random.Random(ppo_config.seed).sample(prompts, min(ppo_config.sample_prompts, len(prompts)))
    progress = Progress("ppo", total=ppo_config.steps)

    def on_step(step: int, m: dict[str, float]) -> None:
        progress.update(step + 1, kl=round(m["objective/kl"], 4), score=round(m["objective/scores"], 4))

    def train(staged: Path) -> dict[str, Any]:
        from worker.ppo.run import train_policy

        metrics = train_policy(
            prompts,
            policy_source=inputs["policy_source"],
            reward_source=inputs["reward_dir"],
            out_dir=staged,
            config=ppo_config,
            device=settings.device,
            base_model=inputs["base_model"],
            sample_prompts=shown,
            on_step=on_step,
            extra_config={
                "project_id": project_id,
                "reward_version": inputs["reward_version"],
                "policy_version": inputs["policy_version"],
                "base_model": inputs["base_model"],
            },
            lora=LoraSettings.from_settings(settings),
            template=settings.chat_template,
        )
        progress.update(ppo_config.steps, stage="publishing", force=True)
        return metrics

    return contract.train_and_publish(
        settings,
        store,
        project_id,
        "ppo",
        train,
        reward_version=inputs["reward_version"],
        policy_version=inputs["policy_version"],
        prompts=len(prompts),
    )
