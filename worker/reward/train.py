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
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefloop.artifacts import write_json
from prefloop.errors import JobSkipped
from prefloop.family import Conversation, LoraSettings
from prefloop.models import save_model
from prefloop.preferences import PreferencePair
from prefloop.scoring import RENDERING_FILE
from worker.reward.config import RewardTrainConfig, auto_learning_rate

if TYPE_CHECKING:
    import torch
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from trl import RewardTrainer

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

    keep_best = _KeepBest.create(config.early_stopping_patience)
    trainer = _build_trainer(
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
    _tidy_trainer_dir(out / "tracking")
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


class _KeepBest:
    """Early stopping on the validation loss, keeping the best evaluation's trainable weights in memory
    (a CPU copy: no checkpoint written to disk; with LoRA only the adapter and head are copied)."""

    best_step: int | None
    best_epoch: float | None
    weights: dict[str, torch.Tensor] | None
    callback: TrainerCallback  # set by create()

    def __init__(self, patience: int) -> None:
        self.patience, self.best_loss, self.best_step, self.best_epoch = patience, math.inf, None, None
        self.bad, self.stopped_early, self.weights = 0, False, None

    @classmethod
    def create(cls, patience: int) -> _KeepBest:
        from transformers import TrainerCallback

        keeper = cls(patience)

        class Callback(TrainerCallback):
            def on_evaluate(
                self,
                args: TrainingArguments,
                state: TrainerState,
                control: TrainerControl,
                metrics: dict[str, float] | None = None,
                model: Any = None,
                **kwargs: Any,
            ) -> None:
                keeper.evaluated(state, control, (metrics or {}).get("eval_loss"), model)

        keeper.callback = Callback()
        return keeper

    def evaluated(self, state: TrainerState, control: TrainerControl, loss: float | None, model: Any) -> None:
        if loss is None or model is None:
            return
        if loss < self.best_loss - 1e-4:
            self.best_loss, self.best_step, self.best_epoch, self.bad = loss, state.global_step, state.epoch, 0
            self.weights = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
            return
        self.bad += 1
        if self.patience and self.bad >= self.patience:
            self.stopped_early = control.should_training_stop = True

    def restore(self, model: Any, state: TrainerState, validation_pairs: int) -> dict[str, Any]:
        """Load the best weights back (when a later evaluation was worse) and describe the run's length."""
        import torch

        if self.weights is not None and self.best_step != state.global_step:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if name in self.weights:
                        param.copy_(self.weights[name].to(param.device))
        self.weights = None
        return {
            "train/epochs": round(state.epoch or 0.0, 3),
            "train/steps": state.global_step,
            "train/best_epoch": round(self.best_epoch, 3) if self.best_epoch is not None else None,
            "train/best_step": self.best_step,
            "train/stopped_early": self.stopped_early,
            "validation/pairs": validation_pairs,
            "validation/loss_best": round(self.best_loss, 4) if self.best_step is not None else None,
        }


def _build_trainer(
    model: Any,
    tokenizer: Any,
    train_ids: dict[str, list[list[int]]],
    eval_ids: dict[str, list[list[int]]] | None,
    config: RewardTrainConfig,
    out: Path,
    device: torch.device,
    bf16: bool,
    progress: ProgressFn | None,
    learning_rate: float,
    keep_best: _KeepBest,
) -> RewardTrainer:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps
    steps = math.ceil(len(train_ids["chosen_ids"]) / per_step)
    total = max(1, math.ceil(steps * config.num_train_epochs))
    eval_steps = max(1, steps // config.eval_points) if config.eval_points > 0 and eval_ids else None
    logging_steps = config.logging_steps or max(1, min(steps, total // 100))
    args = RewardConfig(
        output_dir=str(out / "tracking"),
        learning_rate=learning_rate,
        num_train_epochs=config.num_train_epochs,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        weight_decay=config.weight_decay,
        warmup_steps=round(steps * config.warmup_ratio),
        lr_scheduler_type=config.lr_scheduler_type,
        max_length=None,  # already filtered in _encode
        center_rewards_coefficient=config.center_rewards_coefficient,
        logging_steps=logging_steps,
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
        save_strategy="no",
        report_to=_report_to(config.tracking),
        use_cpu=device.type == "cpu",
        bf16=bf16,
        activation_checkpointing=config.gradient_checkpointing,
        seed=config.seed,
        data_seed=config.seed,
        disable_tqdm=True,
        dataloader_pin_memory=device.type == "cuda",
        run_name=out.name,
    )

    class _Progress(TrainerCallback):
        def on_step_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
        ) -> None:
            if progress:
                progress(state.global_step, state.max_steps, "training")

    return RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(train_ids),
        eval_dataset=Dataset.from_dict(eval_ids) if eval_ids else None,
        processing_class=tokenizer,
        callbacks=[_Progress(), keep_best.callback],
    )


def _report_to(tracking: str) -> str:
    """The tracker to hand to transformers, or "none" when it is off or its package is missing."""
    import importlib.util

    if tracking == "none":
        return "none"
    package = {"tensorboard": "tensorboard", "wandb": "wandb"}[tracking]
    if importlib.util.find_spec(package) is None and not (
        tracking == "tensorboard" and importlib.util.find_spec("tensorboardX")
    ):
        logger.warning(
            "REWARD_TRACKING=%s but %s is not installed (pip install 'prefloop[tracking]'): tracking is off",
            tracking,
            package,
        )
        return "none"
    return tracking


def _tidy_trainer_dir(path: Path) -> None:
    """Keep the trainer's output directory only when a tracker wrote something there."""
    import shutil

    if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
        shutil.rmtree(path, ignore_errors=True)
