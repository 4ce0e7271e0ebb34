"""Every knob of a reward-model run, saved with the result as train_config.json.

Defaults follow TRL's RewardTrainer recipe (Bradley-Terry loss, one epoch, a small learning rate
for full fine-tuning). A run may override any knob by name (`prefloop train-reward --set
num_train_epochs=2`); an unknown name is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefloop.errors import InputError
from prefloop.knobs import Knobs, knob as _knob


@dataclass(frozen=True)
class RewardTrainConfig(Knobs):
    """Every knob of a reward-model run; saved with the result as train_config.json."""

    label = "reward training config"

    learning_rate: float = _knob(1e-5, "AdamW learning rate; 1e-5 to 2e-5 suits full fine-tuning at GPT-2 scale.")
    num_train_epochs: float = _knob(1.0, "Passes over the training pairs; one is usual (more overfits).")
    per_device_train_batch_size: int = _knob(8, "Pairs per step per device (each pair is two sequences in one forward).")
    per_device_eval_batch_size: int = _knob(16, "Pairs per evaluation batch.")
    gradient_accumulation_steps: int = _knob(1, "Steps accumulated before an optimizer update.")
    weight_decay: float = _knob(0.0, "AdamW weight decay.")
    warmup_ratio: float = _knob(0.05, "Fraction of the steps spent warming the learning rate up.")
    lr_scheduler_type: str = _knob("linear", "transformers scheduler name.")
    max_length: int = _knob(1024, "Longest (prompt + response) in tokens; longer pairs are dropped (capped at the model's context length).")
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
            raise InputError(f"reward training config: tracking must be none, tensorboard or wandb, got {self.tracking!r}")
        if not 0 < self.eval_fraction < 1:
            raise InputError(f"reward training config: eval_fraction must be in (0, 1), got {self.eval_fraction}")
