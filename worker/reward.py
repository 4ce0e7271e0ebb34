"""Reward-model training with TRL's RewardTrainer (Bradley-Terry loss, accelerate underneath).

`train_reward(pairs, base_model, out_dir, config) -> metrics` is the one entry point: the job
(worker/reward_job.py), the benchmark, PPO's closed-loop test and `python -m worker.reward_cli`
(which `accelerate launch` spreads over several GPUs) call it. It starts from BASE_MODEL
with a fresh one-output head, splits train/eval by prompt (no prompt on both sides), tokenizes
exactly as serving does (prefloop/scoring.py), trains one epoch by default with dynamic padding,
evaluates, and writes into `out_dir`: weights (safetensors), tokenizer, train_config.json,
metrics.json, data.json and curve.png. It never publishes: callers train into
`ArtifactStore.staging()` and publish the directory when this returns.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from prefloop.errors import JobSkipped
from prefloop.preferences import PreferencePair
from prefloop.text import reward_text

logger = logging.getLogger(__name__)
ProgressFn = Callable[[int, int, str], None]  # (done, total, stage)


def _knob(default: Any, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class RewardTrainConfig:
    """Every knob of a reward-model run; saved with the result as train_config.json."""

    learning_rate: float = _knob(1e-5, "AdamW learning rate; 1e-5 to 2e-5 suits full fine-tuning at GPT-2 scale.")
    num_train_epochs: float = _knob(1.0, "Passes over the training pairs; one is usual (more overfits).")
    per_device_train_batch_size: int = _knob(8, "Pairs per step per device (each pair is two sequences in one forward).")
    per_device_eval_batch_size: int = _knob(16, "Pairs per evaluation batch.")
    gradient_accumulation_steps: int = _knob(1, "Steps accumulated before an optimizer update.")
    weight_decay: float = _knob(0.0, "AdamW weight decay.")
    warmup_ratio: float = _knob(0.05, "Fraction of the steps spent warming the learning rate up.")
    lr_scheduler_type: str = _knob("linear", "transformers scheduler name.")
    max_length: int = _knob(1024, "Longest (prompt + response) in tokens; longer pairs are dropped (capped at the model's n_positions).")
    center_rewards_coefficient: float | None = _knob(0.01, "Pulls rewards towards mean 0 (TRL's recommendation: 0.01); None: off.")
    eval_fraction: float = _knob(0.2, "Share of the distinct prompts held out for evaluation.")
    min_pairs: int = _knob(8, "Fewer usable pairs than this: the run is skipped.")
    eval_points: int = _knob(4, "Evaluations during training, for the curve (0: only the final one).")
    logging_steps: int = _knob(5, "Optimizer steps between two logged training losses.")
    gradient_checkpointing: bool = _knob(False, "Trade compute for memory (TRL turns it on by default; GPT-2 small does not need it).")
    seed: int = _knob(0, "Seed for the split, the head's initialisation and data order.")
    device: str = _knob("auto", "auto, cpu, cuda or cuda:N (auto: a GPU if one is visible).")
    bf16: bool | None = _knob(None, "bf16 mixed precision; None: on for a GPU that supports it, off on CPU.")
    tracking: str = _knob("none", "none, tensorboard or wandb (used when the package is installed).")

    def __post_init__(self) -> None:
        if self.tracking not in ("none", "tensorboard", "wandb"):
            raise ValueError(f"tracking must be none, tensorboard or wandb, got {self.tracking!r}")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "RewardTrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values or {}) - names
        if unknown:
            raise ValueError(f"unknown reward training option(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**dict(values or {}))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def as_pairs(items: Iterable[PreferencePair | Mapping[str, Any]]) -> list[PreferencePair]:
    """Accept PreferencePair objects or dicts with prompt/chosen/rejected (optionally task_id, annotation_ids)."""
    out = []
    for item in items:
        if isinstance(item, PreferencePair):
            out.append(item)
        else:
            out.append(PreferencePair(item["prompt"], item["chosen"], item["rejected"], item.get("task_id"),
                                      tuple(item.get("annotation_ids") or ())))
    return out


def split_by_prompt(pairs: Sequence[PreferencePair], eval_fraction: float, seed: int) -> tuple[list, list]:
    """(train, eval) with no prompt on both sides."""
    prompts = sorted({p.prompt for p in pairs})
    if len(prompts) < 2:
        raise JobSkipped(f"the {len(pairs)} pair(s) come from {len(prompts)} prompt(s); a train/eval split by prompt "
                         "needs at least 2 different prompts")
    random.Random(seed).shuffle(prompts)
    n_eval = min(len(prompts) - 1, max(1, round(len(prompts) * eval_fraction)))
    held_out = set(prompts[:n_eval])
    return [p for p in pairs if p.prompt not in held_out], [p for p in pairs if p.prompt in held_out]


def train_reward(pairs: Iterable[PreferencePair | Mapping[str, Any]], base_model: str | Path, out_dir: str | Path,
                 config: RewardTrainConfig | Mapping[str, Any] | None = None, *, progress: ProgressFn | None = None,
                 conversion: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train a reward model on `pairs` from `base_model` into `out_dir`; returns the metrics
    (also written to out_dir/metrics.json). `conversion` is `ConversionSummary.as_dict()` plus
    optional "seen" (annotation id -> updated_at), stored in data.json. Raises JobSkipped when
    there is too little data."""
    import torch
    from transformers import set_seed

    from prefloop.models import fused_gelu, load_reward_model, load_tokenizer, resolve_device
    from prefloop.scoring import tokenize
    from worker import reward_report

    config = config if isinstance(config, RewardTrainConfig) else RewardTrainConfig.from_dict(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = as_pairs(pairs)
    if len(pairs) < config.min_pairs:
        raise JobSkipped(f"only {len(pairs)} usable preference pair(s); training needs at least {config.min_pairs}")
    device = resolve_device(config.device)
    bf16 = config.bf16 if config.bf16 is not None else (device.type == "cuda" and torch.cuda.is_bf16_supported())
    set_seed(config.seed)
    tokenizer = load_tokenizer(base_model, padding_side="right")
    model = fused_gelu(load_reward_model(base_model, device=torch.device("cpu"), dtype=torch.float32,
                                         pad_token_id=tokenizer.pad_token_id))
    model.config.prefloop_base_model = str(base_model)
    max_length = min(config.max_length, getattr(model.config, "n_positions", None) or config.max_length)

    train, held_out = split_by_prompt(pairs, config.eval_fraction, config.seed)
    train_ids, train, long_train = _encode(tokenizer, train, max_length, tokenize)
    eval_ids, held_out, long_eval = _encode(tokenizer, held_out, max_length, tokenize)
    if not train or not held_out:
        raise JobSkipped(f"after dropping {long_train + long_eval} pair(s) longer than {max_length} tokens, "
                         f"{len(train)} train and {len(held_out)} eval pair(s) are left")

    trainer = _build_trainer(model, tokenizer, train_ids, eval_ids, config, out, device, bf16, progress)
    started = time.perf_counter()
    trainer.train()
    runtime = time.perf_counter() - started
    model = trainer.accelerator.unwrap_model(trainer.model)
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:  # several processes (accelerate launch): one evaluates and writes
        return {}
    if progress:
        progress(trainer.state.max_steps, trainer.state.max_steps, "evaluating")
    evaluation = reward_report.evaluate(model, tokenizer, held_out, eval_ids, batch_size=config.per_device_eval_batch_size * 2,
                                        device=next(model.parameters()).device)
    metrics = reward_report.metrics(evaluation, train_pairs=len(train), eval_pairs=len(held_out),
                                    runtime_s=runtime, epochs=config.num_train_epochs, log_history=trainer.state.log_history,
                                    dropped_too_long=long_train + long_eval, conversion=conversion)
    resolved = {"device": str(device), "bf16": bool(bf16), "max_length": max_length, "base_model": str(base_model),
                "steps": trainer.state.max_steps, "processes": trainer.accelerator.num_processes, "torch": torch.__version__}
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    reward_report.write_all(out, config.as_dict(), resolved, metrics, train, held_out, conversion, trainer.state.log_history)
    _tidy_trainer_dir(out / "tracking")
    logger.info("reward model trained on %d pairs in %.1fs: eval accuracy %.3f (longer-answer baseline %.3f)",
                len(train), runtime, metrics["eval/accuracy"], metrics["eval/length_baseline_accuracy"])
    return metrics


def _encode(tokenizer, pairs: list[PreferencePair], max_length: int, tokenize) -> tuple[dict, list, int]:
    chosen = tokenize(tokenizer, [reward_text(p.prompt, p.chosen) for p in pairs])
    rejected = tokenize(tokenizer, [reward_text(p.prompt, p.rejected) for p in pairs])
    keep = [i for i in range(len(pairs)) if len(chosen[i]) <= max_length and len(rejected[i]) <= max_length]
    ids = {"chosen_ids": [chosen[i] for i in keep], "rejected_ids": [rejected[i] for i in keep]}
    return ids, [pairs[i] for i in keep], len(pairs) - len(keep)


def _build_trainer(model, tokenizer, train_ids: dict, eval_ids: dict, config: RewardTrainConfig, out: Path, device,
                   bf16: bool, progress: ProgressFn | None):
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RewardConfig, RewardTrainer

    steps = math.ceil(len(train_ids["chosen_ids"]) / (config.per_device_train_batch_size * config.gradient_accumulation_steps))
    total = max(1, math.ceil(steps * config.num_train_epochs))
    eval_steps = max(1, total // config.eval_points) if config.eval_points > 0 else None
    args = RewardConfig(
        output_dir=str(out / "tracking"), learning_rate=config.learning_rate, num_train_epochs=config.num_train_epochs,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio, lr_scheduler_type=config.lr_scheduler_type, max_length=None,  # already filtered in _encode
        center_rewards_coefficient=config.center_rewards_coefficient, logging_steps=config.logging_steps,
        eval_strategy="steps" if eval_steps else "no", eval_steps=eval_steps, save_strategy="no",
        report_to=_report_to(config.tracking), use_cpu=device.type == "cpu", bf16=bf16,
        activation_checkpointing=config.gradient_checkpointing, seed=config.seed, data_seed=config.seed,
        disable_tqdm=True, dataloader_pin_memory=device.type == "cuda", run_name=out.name,
    )

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if progress:
                progress(state.global_step, state.max_steps, "training")

    return RewardTrainer(model=model, args=args, train_dataset=Dataset.from_dict(train_ids),
                         eval_dataset=Dataset.from_dict(eval_ids), processing_class=tokenizer, callbacks=[_Progress()])


def _report_to(tracking: str) -> str:
    """The tracker to hand to transformers, or "none" when it is off or its package is missing."""
    import importlib.util

    if tracking == "none":
        return "none"
    package = {"tensorboard": "tensorboard", "wandb": "wandb"}[tracking]
    if importlib.util.find_spec(package) is None and not (tracking == "tensorboard" and importlib.util.find_spec("tensorboardX")):
        logger.warning("REWARD_TRACKING=%s but %s is not installed (pip install 'prefloop[tracking]'): tracking is off",
                       tracking, package)
        return "none"
    return tracking


def _tidy_trainer_dir(path: Path) -> None:
    """Keep the trainer's output directory only when a tracker wrote something there."""
    import shutil

    if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
        shutil.rmtree(path, ignore_errors=True)
