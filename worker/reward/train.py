"""Reward-model training with TRL's RewardTrainer (Bradley-Terry loss, accelerate underneath).

`train_reward(pairs, base_model, out_dir, config) -> metrics` is the one entry point: the job
(worker/reward/job.py), the benchmark, PPO's closed-loop test and `python -m worker.reward`
(which `accelerate launch` spreads over several GPUs) call it. It starts from BASE_MODEL
with a fresh one-output head, splits train/eval by prompt (no prompt on both sides), tokenizes
exactly as serving does (prefloop/scoring.py), trains with dynamic padding until a validation split
(carved from the training prompts) stops improving, keeps the best evaluation's weights, evaluates
on the held-out pairs, and writes into `out_dir`: weights (safetensors), tokenizer, train_config.json,
metrics.json, data.json and curve.png. It never publishes: callers train into
`ArtifactStore.staging()` and publish the directory when this returns.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prefloop.artifacts import write_json
from prefloop.errors import JobSkipped
from prefloop.family import Conversation, LoraSettings
from prefloop.models import save_model
from prefloop.preferences import PreferencePair
from prefloop.scoring import RENDERING_FILE
from worker.reward.config import RewardTrainConfig, auto_learning_rate
from worker.reward.trainer import KeepBest, build_trainer, tidy_trainer_dir

logger = logging.getLogger(__name__)
ProgressFn = Callable[[int, int, str], None]  # (done, total, stage)


def as_pairs(items: Iterable[PreferencePair | Mapping[str, Any]]) -> list[PreferencePair]:
    """Accept PreferencePair objects or dicts with prompt/chosen/rejected (optionally task_id, annotation_ids)."""
    out = []
    for item in items:
        if isinstance(item, PreferencePair):
            out.append(item)
        else:
            conv = Conversation.of(item["messages"] if "messages" in item else item["prompt"])
            out.append(
                PreferencePair(
                    item.get("prompt") or conv.key,
                    item["chosen"],
                    item["rejected"],
                    item.get("task_id"),
                    tuple(item.get("annotation_ids") or ()),
                    conversation=conv,
                )
            )
    return out


def split_by_prompt(
    pairs: Sequence[PreferencePair], eval_fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, eval) with no prompt on both sides."""
    prompts = sorted({p.prompt for p in pairs})
    if len(prompts) < 2:
        raise JobSkipped(
            f"the {len(pairs)} pair(s) come from {len(prompts)} prompt(s); a train/eval split by prompt "
            "needs at least 2 different prompts"
        )
    random.Random(seed).shuffle(prompts)
    n_eval = min(len(prompts) - 1, max(1, round(len(prompts) * eval_fraction)))
    held_out = set(prompts[:n_eval])
    return [p for p in pairs if p.prompt not in held_out], [p for p in pairs if p.prompt in held_out]


def train_reward(
    pairs: Iterable[PreferencePair | Mapping[str, Any]],
    base_model: str | Path,
    out_dir: str | Path,
    config: RewardTrainConfig | Mapping[str, Any] | None = None,
    *,
    progress: ProgressFn | None = None,
    conversion: Mapping[str, Any] | None = None,
    chat_template: str = "",
    lora: LoraSettings | None = None,
) -> dict[str, Any]:
    """Train a reward model on `pairs` from `base_model` (REWARD_BASE_MODEL: any backbone
    AutoModelForSequenceClassification loads, causal LM or encoder) into `out_dir`; returns the
    metrics (also written to out_dir/metrics.json). Pairs are rendered by the backbone's own
    tokenizer (`prefloop.family.scoring_ids`, with `chat_template` = CHAT_TEMPLATE), exactly as
    serving renders them; `lora` (LORA_R > 0) trains a LoRA adapter and the head instead of every
    weight, and the version then holds the adapter and its base's name. `conversion` is
    `ConversionSummary.as_dict()` plus optional "seen" (annotation id -> updated_at), stored in
    data.json. Raises JobSkipped when there is too little data."""
    import torch
    from transformers import set_seed

    from prefloop.family import PADDING_SIDE, context_length, pad_id
    from prefloop.models import fused_gelu, load_reward_model, load_tokenizer, resolve_device, use_bf16, with_lora
    from worker.reward import report as reward_report

    config = config if isinstance(config, RewardTrainConfig) else RewardTrainConfig.from_overrides(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = as_pairs(pairs)
    if len(pairs) < config.min_pairs:
        raise JobSkipped(f"only {len(pairs)} usable preference pair(s); training needs at least {config.min_pairs}")
    device = resolve_device(config.device)
    bf16 = use_bf16(device, config.bf16)
    set_seed(config.seed)
    tokenizer = load_tokenizer(base_model, padding_side=PADDING_SIDE["score"])
    model = fused_gelu(
        load_reward_model(base_model, device=torch.device("cpu"), dtype=torch.float32, pad_token_id=pad_id(tokenizer))
    )
    max_length = min(config.max_length, context_length(model.config, tokenizer, default=config.max_length))
    model = with_lora(model, lora or LoraSettings(), "seq_cls", base_model=base_model)
    if config.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()  # frozen embeddings (LoRA): checkpointed blocks still get gradients
    encode = functools.partial(_encode, template=chat_template)

    train, held_out = split_by_prompt(pairs, config.eval_fraction, config.seed)
    train, validation = _validation_split(train, config)
    train_ids, train, long_train = encode(tokenizer, train, max_length)
    eval_ids, held_out, long_eval = encode(tokenizer, held_out, max_length)
    val_ids, validation, long_val = encode(tokenizer, validation, max_length)
    if not train or not held_out:
        raise JobSkipped(
            f"after dropping {long_train + long_eval + long_val} pair(s) longer than {max_length} tokens, "
            f"{len(train)} train and {len(held_out)} eval pair(s) are left"
        )
    parameters = sum(p.numel() for p in model.parameters())
    learning_rate = config.learning_rate or auto_learning_rate(parameters, lora=bool(lora and lora.r))

    keep_best = KeepBest.create(config.early_stopping_patience)
    trainer = build_trainer(
        model,
        tokenizer,
        train_ids,
        val_ids if validation else None,
        config,
        out,
        device,
        bf16,
        progress,
        learning_rate,
        keep_best,
    )
    started = time.perf_counter()
    trainer.train()
    runtime = time.perf_counter() - started
    length = keep_best.restore(trainer.model, trainer.state, len(validation))
    model = trainer.accelerator.unwrap_model(trainer.model)
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:  # several processes (accelerate launch): one evaluates and writes
        return {}
    if progress:
        progress(trainer.state.max_steps, trainer.state.max_steps, "evaluating")
    evaluation = reward_report.evaluate(
        model,
        tokenizer,
        held_out,
        eval_ids,
        batch_size=config.per_device_eval_batch_size * 2,
        device=next(model.parameters()).device,
    )
    metrics = reward_report.metrics(
        evaluation,
        train_pairs=len(train),
        eval_pairs=len(held_out),
        runtime_s=runtime,
        epochs=length["train/epochs"],
        log_history=trainer.state.log_history,
        dropped_too_long=long_train + long_eval + long_val,
        conversion=conversion,
        training=dict(length, **{"train/learning_rate": learning_rate}),
    )
    votes = (conversion or {}).get("votes")
    if votes:
        metrics["annotators"] = reward_report.annotator_table(
            model,
            tokenizer,
            votes,
            max_length=max_length,
            template=chat_template,
            batch_size=config.per_device_eval_batch_size * 2,
            device=next(model.parameters()).device,
        )
    resolved = {
        "device": str(device),
        "bf16": bool(bf16),
        "max_length": max_length,
        "base_model": str(base_model),
        "steps": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "learning_rate": learning_rate,
        "learning_rate_from": "config" if config.learning_rate else f"auto_learning_rate({parameters} parameters)",
        "parameters": parameters,
        "processes": trainer.accelerator.num_processes,
        "torch": torch.__version__,
    }
    resolved.update(
        reward_base_model=str(base_model),
        lora=dataclasses.asdict(lora) if lora and lora.enabled else None,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    save_model(model, tokenizer, out, base_model=base_model)
    write_json(out / RENDERING_FILE, {"chat_template": chat_template})
    reward_report.write_all(
        out, config.to_dict(), resolved, metrics, train, held_out, conversion, trainer.state.log_history, validation
    )
    tidy_trainer_dir(out / "tracking")
    logger.info(
        "reward model trained on %d pairs (%d steps, %.1f epochs, lr %.2g) in %.1fs: eval accuracy %.3f "
        "[%.3f, %.3f] on %d pairs (longer-answer baseline %.3f)",
        len(train),
        length["train/steps"],
        length["train/epochs"],
        learning_rate,
        runtime,
        metrics["eval/accuracy"],
        metrics["eval/accuracy_ci_low"],
        metrics["eval/accuracy_ci_high"],
        len(held_out),
        metrics["eval/length_baseline_accuracy"],
    )
    return metrics


def _encode(
    tokenizer: Any, pairs: list[PreferencePair], max_length: int, template: str = ""
) -> tuple[dict[str, list[list[int]]], list[PreferencePair], int]:
    """Token ids of both sides of each pair, as serving tokenizes them; pairs longer than
    `max_length` are dropped (TRL's rule), and counted."""
    from prefloop.family import scoring_ids

    chosen = [scoring_ids(tokenizer, p.conv, p.chosen, template) for p in pairs]
    rejected = [scoring_ids(tokenizer, p.conv, p.rejected, template) for p in pairs]
    keep = [i for i in range(len(pairs)) if len(chosen[i]) <= max_length and len(rejected[i]) <= max_length]
    ids = {"chosen_ids": [chosen[i] for i in keep], "rejected_ids": [rejected[i] for i in keep]}
    return ids, [pairs[i] for i in keep], len(pairs) - len(keep)


def _validation_split(
    train: list[PreferencePair], config: RewardTrainConfig
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, validation): the pairs that choose the training length, by prompt like the eval split.
    None without evaluations during training (eval_points=0) or with a single training prompt."""
    if config.eval_points == 0 or len({p.prompt for p in train}) < 2:
        return train, []
    return split_by_prompt(train, config.validation_fraction, config.seed + 1)
