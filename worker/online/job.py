"""The GRPO / RLOO job of a project: the same checks as PPO (a current reward model that reached
PPO_MIN_ACCURACY, trained on the policy's base or on REWARD_BASE_MODEL), the project's prompts from
Label Studio, a run from the current policy into a staging directory, an atomic publish. The
reward job queues it when POLICY_TRAINER is grpo or rloo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from prefloop.artifacts import ArtifactStore
from prefloop.errors import InputError
from prefloop.family import LoraSettings
from prefloop.settings import Settings
from worker.online.train import KNOBS
from worker.trainers import contract


def online_job(
    settings: Settings,
    project_id: int,
    *,
    trainer: str,
    forced: bool = False,
    force: bool = False,
    config: dict[str, Any] | None = None,
    reason: str = "",
    **_: Any,
) -> dict[str, Any]:
    from worker.runtime import Progress

    if trainer not in KNOBS:
        raise InputError(f"online_job runs grpo or rloo, not {trainer!r}")
    store = ArtifactStore(settings.model_dir, keep_versions=settings.keep_versions)
    store.sweep_staging(project_id)
    knobs, skip = contract.knobs(
        KNOBS[trainer], trainer, project_id, {"max_new_tokens": settings.max_new_tokens, **(config or {})}
    )
    if skip:
        return skip
    inputs, why = contract.check_reward(settings, store, project_id, force or forced, trainer)
    if inputs is None:
        return contract.skipped(trainer, project_id, cast(str, why))  # no inputs: always a reason
    prompts, bad = contract.read_prompts(settings, project_id, conversations=True)
    if not prompts:
        return contract.no_prompts(trainer, project_id, bad)
    progress = Progress(trainer, total=knobs.steps)

    def report(done: int, total: int, stage: str) -> None:
        progress.update(done, stage=f"{trainer} {stage}", force=done in (0, total))

    def train(staged: Path) -> dict[str, Any]:
        from worker.online.train import train_online

        metrics = train_online(
            trainer,
            prompts,
            policy_source=inputs["policy_source"],
            reward_source=inputs["reward_dir"],
            out_dir=staged,
            config=knobs,
            device=settings.device,
            base_model=inputs["base_model"],
            lora=LoraSettings.from_settings(settings),
            template=settings.chat_template,
            progress=report,
            extra_config={
                "project_id": project_id,
                "reason": reason,
                "reward_version": inputs["reward_version"],
                "policy_version": inputs["policy_version"],
                "base_model": inputs["base_model"],
            },
        )
        progress.update(knobs.steps, stage="publishing", force=True)
        return metrics

    return contract.train_and_publish(
        settings,
        store,
        project_id,
        trainer,
        train,
        reward_version=inputs["reward_version"],
        policy_version=inputs["policy_version"],
        prompts=len(prompts),
    )
