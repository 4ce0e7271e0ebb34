"""One PPO run from start to saved directory: load, sample "before", train, sample "after", save the
policy (a plain causal LM plus tokenizer, what generation loads) and the report beside it.

`train_policy` writes into `out_dir` only; publishing (staging -> version) is the job's business, so
a run that fails or is killed leaves nothing that could be served.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch

from prefloop.family import Conversation, LoraSettings
from worker.ppo.config import PPOConfig
from worker.ppo.report import sample_records, summary, write_report
from worker.ppo.rollout import ScoreFn, sample_texts
from worker.ppo.trainer import PPOTrainer

logger = logging.getLogger(__name__)


def train_policy(
    prompts: Sequence[Conversation | str],
    *,
    policy_source: str | Path,
    out_dir: str | Path,
    config: PPOConfig,
    reward_source: str | Path | None = None,
    score: ScoreFn | None = None,
    device: str = "auto",
    base_model: str | None = None,
    sample_prompts: Sequence[Conversation | str] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    extra_config: dict[str, Any] | None = None,
    lora: LoraSettings | None = None,
    template: str = "",
) -> dict[str, Any]:
    """Train with PPO on `prompts` (Conversations or plain prompt strings) against the reward model
    at `reward_source` (or a `score` function), save into `out_dir`, and return the summary metrics
    (also in metrics.json). The reward model may have another backbone than the policy: it scores
    the decoded answers, re-tokenized by its own tokenizer. `lora`: LORA_* settings; `template`:
    CHAT_TEMPLATE."""
    if not prompts:
        raise ValueError("train_policy needs at least one prompt")
    trainer = PPOTrainer(config, str(policy_source), device=device, lora=lora, template=template)
    if score is None:
        from prefloop.scoring import RewardScorer

        # Callers give `reward_source` or `score`; with neither, RewardScorer fails on None as it always did.
        scorer = RewardScorer(
            cast("str | Path", reward_source),
            device=str(trainer.accelerator.device),
            batch_size=config.forward_batch_size,
        )
        score = scorer.score
    trainer.score = score
    shown = list(sample_prompts or prompts[: config.sample_prompts])

    def responses() -> list[str]:
        torch.manual_seed(config.seed + 12345)  # the same sampling noise before and after
        return sample_texts(
            trainer.policy,
            trainer.tokenizer,
            shown,
            max_new_tokens=config.max_new_tokens,
            max_prompt_tokens=config.max_prompt_tokens,
            batch_size=config.forward_batch_size,
            device=trainer.accelerator.device,
            eos_ids=trainer.eos_ids,
            pad_token_id=trainer.pad_id,
            autocast=trainer.accelerator.autocast,
            template=template,
        )

    before = responses()
    before_scores = list(score(shown, before))
    logger.info("PPO: %d prompts, %d steps of %d episodes", len(prompts), config.steps, config.rollout_batch_size)
    started = time.perf_counter()
    run = trainer.train(prompts, on_step=on_step)
    runtime_s = time.perf_counter() - started
    after = responses()
    after_scores = list(score(shown, after))
    out_dir = Path(out_dir)
    trainer.save(out_dir, base_model=base_model)
    metrics = summary(
        run.history,
        run.final,
        run.stopped_early,
        before_scores,
        after_scores,
        kl_stop=config.kl_stop,
        prompts=len(prompts),
        runtime_s=runtime_s,
        processes=trainer.accelerator.num_processes,
    )
    if trainer.accelerator.is_main_process:
        resolved = {
            **config.to_dict(),
            "policy_source": str(policy_source),
            "reward_source": str(reward_source) if reward_source else None,
            "lora": dataclasses.asdict(lora) if lora and lora.enabled else None,
            **(extra_config or {}),
        }
        write_report(
            out_dir,
            config=resolved,
            metrics=metrics,
            samples=sample_records([Conversation.of(p).key for p in shown], before, after, before_scores, after_scores),
        )
    return metrics
