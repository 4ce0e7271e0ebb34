"""The trainer around reward-model training (worker/reward/train.py): TRL's RewardTrainer configured
from RewardTrainConfig, with progress reports, and `KeepBest`, which stops on the validation loss and
keeps the best evaluation's weights in memory."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.reward.config import RewardTrainConfig

if TYPE_CHECKING:
    import torch
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
    from trl import RewardTrainer

    from worker.reward.train import ProgressFn

logger = logging.getLogger(__name__)


class KeepBest:
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
    def create(cls, patience: int) -> KeepBest:
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


def build_trainer(
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
    keep_best: KeepBest,
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
        max_length=None,  # already filtered in train.encode_pairs
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


def tidy_trainer_dir(path: Path) -> None:
    """Keep the trainer's output directory only when a tracker wrote something there."""
    import shutil

    if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
        shutil.rmtree(path, ignore_errors=True)
