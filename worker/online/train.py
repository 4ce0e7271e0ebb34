"""One GRPO or RLOO run: `train_online(trainer, prompts, policy_source, reward_source, out_dir, config)`.

The reward function is the project's reward model through prefloop.scoring.RewardScorer, so an
answer is scored exactly as `/predict`, reward training and PPO score it: the conversation rendered
by the *reward* model's own tokenizer (its chat template, its special tokens, its backbone when
REWARD_BASE_MODEL differs from the policy's). TRL's built-in path for a sequence-classification
`reward_funcs` would instead score `prompt + completion` text joined without the separator and
without the tokenizer's special tokens. Prompts go to TRL as their model-independent keys; the
trainer turns each into the policy's `family.generation_ids`, not TRL's own tokenization.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from worker.online.config import GRPOKnobs, OnlineKnobs, RLOOKnobs
from worker.trainers import trl_run

logger = logging.getLogger(__name__)
KNOBS: dict[str, type[OnlineKnobs]] = {"grpo": GRPOKnobs, "rloo": RLOOKnobs}


def curves(name: str) -> list[tuple[str, str]]:
    return [
        (f"{name}/reward", "reward-model score (training samples)"),
        ("objective/kl", "KL to the start (nats, sampled)"),
        (f"{name}/kl", f"{name.upper()}'s per-token KL"),
        (f"{name}/loss", "loss"),
        (f"{name}/reward_std", "reward std within groups"),
        (f"{name}/completions/mean_length", "answer length (tokens)"),
        (f"{name}/entropy", "entropy (nats/token)"),
        (f"{name}/grad_norm", "gradient norm"),
    ]


def train_online(
    name: str,
    prompts: Sequence[Any],
    *,
    policy_source: str | Path,
    reward_source: str | Path,
    out_dir: str | Path,
    config: OnlineKnobs | dict[str, Any] | None = None,
    device: str = "auto",
    base_model: str | None = None,
    lora: Any = None,
    template: str = "",
    progress: trl_run.ProgressFn | None = None,
    extra_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train with GRPO or RLOO (`name`) on `prompts` (Conversations or strings) against the reward
    model at `reward_source`; save into `out_dir` and return the metrics (also in metrics.json)."""
    from datasets import Dataset
    from transformers import set_seed

    from prefloop.family import Conversation
    from prefloop.models import load_tokenizer, resolve_device, use_bf16
    from prefloop.scoring import RewardScorer

    knobs = KNOBS[name]
    # Anything but this trainer's knobs is read as overrides (another class fails there, as it always did).
    config = config if isinstance(config, knobs) else knobs.from_overrides(cast("Mapping[str, Any] | None", config))
    convs = list(dict.fromkeys(Conversation.of(p) for p in prompts))
    if not convs:
        raise ValueError(f"{name} needs at least one prompt")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    set_seed(config.seed)
    tokenizer = load_tokenizer(policy_source, padding_side="left")
    model, peft_config, reference, saved_base = trl_run.load_policy(
        policy_source, base_model or str(policy_source), lora, reference=config.beta == 0
    )
    by_key = {c.key: c for c in convs}
    scorer = RewardScorer(reward_source, device=str(dev), batch_size=64)

    def reward_model(prompts: list[str], completions: list[str], **_: Any) -> list[float]:
        scores = trl_run.score(scorer, [by_key[p] for p in prompts], [c.strip() for c in completions])
        return [float(x) for x in scores]

    cls, args = _trainer(name, config, out, dev, use_bf16(dev))
    trainer = cls(
        model=model,
        reward_funcs=reward_model,
        args=args,
        processing_class=tokenizer,
        train_dataset=Dataset.from_dict({"prompt": list(by_key)}),
        peft_config=peft_config,
    )
    trainer.prefloop_prompt_ids = {
        k: _prompt_ids(tokenizer, c, template, config.max_prompt_tokens) for k, c in by_key.items()
    }
    if scorer.device != trainer.accelerator.device:
        scorer.device, scorer.model = trainer.accelerator.device, scorer.model.to(trainer.accelerator.device)
    resolved = {
        "policy_source": str(policy_source),
        "reward_source": str(reward_source),
        "prompts": len(convs),
        "lora": trl_run.is_lora(trainer),
        "saved_base": saved_base,
        **(extra_config or {}),
    }
    ref = getattr(trainer, "ref_model", None)

    def extra(history: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [h for h in history if isinstance(h.get(f"{name}/reward"), (int, float))]
        first = rows[0][f"{name}/reward"] if rows else None
        final = rows[-1][f"{name}/reward"] if rows else None
        return {
            "prompts": len(convs),
            "beta": config.beta,
            "num_generations": config.num_generations,
            "initial_reward": first,
            "final_reward": final,
            "final_loss": trl_run.last(history, f"{name}/loss"),
        }

    return trl_run.run(
        trainer,
        name,
        config=config,
        out_dir=out,
        shown=trl_run.pick(convs, config.sample_prompts, config.seed),
        kl_prompts=trl_run.pick(convs, config.kl_prompts, config.seed + 1),
        reference=ref if ref is not None else reference,
        reward_source=reward_source,
        base_model=saved_base,
        resolved=resolved,
        template=template,
        curves=curves(name),
        extra=extra,
        progress=progress,
    )


def _prompt_ids(tokenizer: Any, conv: Any, template: str, max_prompt_tokens: int) -> list[int]:
    from prefloop import family

    return family.generation_ids(tokenizer, conv, template)[-max_prompt_tokens:]


def _trainer(name: str, config: Any, out: Path, dev: Any, bf16: bool) -> tuple[type, Any]:
    """The TRL trainer class (prompt ids from prefloop.family) and its config."""
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    common = dict(
        per_device_train_batch_size=config.prompts_per_step * config.num_generations,
        num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens,
        max_steps=config.steps,
        beta=config.beta,
        epsilon=config.epsilon,
        num_iterations=config.num_iterations,
        temperature=config.temperature,
        top_k=0,
        top_p=1.0,
        warmup_steps=config.warmup_ratio,
        shuffle_dataset=True,
    )
    base: type[GRPOTrainer] | type[RLOOTrainer]
    if name == "grpo":
        base, args = (
            GRPOTrainer,
            trl_run.trl_args(
                GRPOConfig,
                config,
                out,
                dev,
                bf16,
                loss_type=config.loss_type,
                scale_rewards=config.scale_rewards,
                **common,
            ),
        )
    else:
        clip = config.reward_clip_range
        base, args = (
            RLOOTrainer,
            trl_run.trl_args(
                RLOOConfig,
                config,
                out,
                dev,
                bf16,
                normalize_advantages=config.normalize_advantages,
                reward_clip_range=None if clip is None else (-clip, clip),
                **common,
            ),
        )

    class Trainer(base):  # type: ignore[misc, valid-type]
        prefloop_prompt_ids: dict[str, list[int]] = {}

        def _tokenize_prompts(self, prompts: list[str]) -> tuple[list[list[int]], None, dict[str, Any]]:
            return [list(self.prefloop_prompt_ids[p]) for p in prompts], None, {}

    return Trainer, args
