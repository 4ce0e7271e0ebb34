"""Every knob of a reward-model run, saved with the result as train_config.json.

Defaults follow TRL's RewardTrainer recipe (Bradley-Terry loss, dynamic padding) with two choices
made from the data and the model instead of fixed numbers, because a project's first reward models
learn from tens to a few hundred pairs (issue 13 measured the old fixed defaults, one epoch at 1e-5,
on 136 pairs with the tiny offline model: 14 optimizer steps, train loss 0.706 against chance 0.693,
eval accuracy 0.37):

- Training length: up to `num_train_epochs` passes, evaluated `eval_points` times per epoch on a
  validation split carved from the training prompts (`validation_fraction`, never the eval pairs
  that metrics.json reports), stopping after `early_stopping_patience` evaluations without a lower
  validation loss; the weights of the best evaluation are kept (worker/reward/train.py).
- Learning rate: `learning_rate=None` picks one from the backbone's parameter count
  (`auto_learning_rate`): 1e-5 for GPT-2 small (124M, TRL's and the literature's full-fine-tuning
  value), larger for smaller models, about 1.5e-3 for the 2-layer tiny model `prefloop up` builds
  offline, which starts from random weights and barely moves at 1e-5.

A run may override any knob by name (`prefloop train-reward --set num_train_epochs=2`); an unknown
name is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefloop.errors import InputError
from prefloop.knobs import Knobs
from prefloop.knobs import knob as _knob


@dataclass(frozen=True)
class RewardTrainConfig(Knobs):
    """Every knob of a reward-model run; saved with the result as train_config.json."""

    label = "reward training config"

    learning_rate: float | None = _knob(
        None,
        "AdamW learning rate; None: chosen from the backbone's size (1e-5 for "
        "GPT-2 small, ~1.5e-3 for the tiny offline model).",
    )
    num_train_epochs: float = _knob(
        30.0, "Most passes over the training pairs; training stops earlier once the validation loss stops improving."
    )
    early_stopping_patience: int = _knob(
        3,
        "Evaluations without a lower validation loss before training stops (0: run "
        "all num_train_epochs); the best evaluation's weights are kept either way.",
    )
    validation_fraction: float = _knob(
        0.15, "Share of the training prompts held out to choose the training length (eval pairs are never used for it)."
    )
    per_device_train_batch_size: int = _knob(
        8, "Pairs per step per device (each pair is two sequences in one forward)."
    )
    per_device_eval_batch_size: int = _knob(16, "Pairs per evaluation batch.")
    gradient_accumulation_steps: int = _knob(1, "Steps accumulated before an optimizer update.")
    weight_decay: float = _knob(0.0, "AdamW weight decay.")
    warmup_ratio: float = _knob(0.1, "Fraction of one epoch's steps spent warming the learning rate up.")
    lr_scheduler_type: str = _knob(
        "constant_with_warmup", "transformers scheduler name (constant: the training length is not known in advance)."
    )
    max_length: int = _knob(
        1024, "Longest (prompt + response) in tokens; longer pairs are dropped (capped at the model's context length)."
    )
    center_rewards_coefficient: float | None = _knob(
        0.01, "Pulls rewards towards mean 0 (TRL's recommendation: 0.01); None: off."
    )
    eval_fraction: float = _knob(0.2, "Share of the distinct prompts held out for evaluation.")
    min_pairs: int = _knob(8, "Fewer usable pairs than this: the run is skipped.")
    eval_points: int = _knob(
        1, "Validation evaluations per epoch (0: none: no validation split, no early stopping, all num_train_epochs)."
    )
    logging_steps: int = _knob(
        0,
        "Optimizer steps between two logged training losses (0: about 100 points over the "
        "run, at least one per epoch).",
    )
    gradient_checkpointing: bool = _knob(
        False, "Trade compute for memory (TRL turns it on by default; GPT-2 small does not need it)."
    )
    seed: int = _knob(0, "Seed for the split, the head's initialisation and data order.")
    device: str = _knob("auto", "auto, cpu, cuda or cuda:N (auto: a GPU if one is visible).")
    bf16: bool | None = _knob(None, "bf16 mixed precision; None: on for a GPU that supports it, off on CPU.")
    tracking: str = _knob("none", "none, tensorboard or wandb (used when the package is installed).")

    def __post_init__(self) -> None:
        bad = "reward training config:"
        if self.tracking not in ("none", "tensorboard", "wandb"):
            raise InputError(f"{bad} tracking must be none, tensorboard or wandb, got {self.tracking!r}")
        if not 0 < self.eval_fraction < 1:
            raise InputError(f"{bad} eval_fraction must be in (0, 1), got {self.eval_fraction}")
        if not 0 < self.validation_fraction < 1:
            raise InputError(f"{bad} validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise InputError(
                f"{bad} learning_rate must be > 0 (or None: from the model's size), got {self.learning_rate}"
            )
        if self.num_train_epochs <= 0:
            raise InputError(f"{bad} num_train_epochs must be > 0, got {self.num_train_epochs}")
        for name in ("early_stopping_patience", "eval_points", "logging_steps"):
            if getattr(self, name) < 0:
                raise InputError(f"{bad} {name} must not be negative, got {getattr(self, name)}")


GPT2_SMALL_PARAMETERS = 124_000_000


def auto_learning_rate(parameters: int, *, lora: bool = False) -> float:
    """A full-fine-tuning learning rate for a reward model with `parameters` weights:
    1e-5 * (124M / parameters) ** 0.75, within [5e-6, 2e-3], two significant digits.

    Anchors: GPT-2 small (124M) -> 1e-5 (TRL's and DeepSpeed-Chat's value at that scale);
    MiniLM-L6 (23M) -> 3.6e-5 (the usual 2e-5..5e-5 for BERT-sized encoders); the 2-layer tiny
    GPT-2 (~0.15M, random weights) -> ~1.6e-3, where measured runs learn and 1e-5 stays at chance;
    1B+ models reach the 5e-6 floor. Smaller models tolerate and need larger steps. A LoRA run
    (only the adapter and the head train) takes ten times that (GPT-2 small: 1e-4), within the same cap."""
    if parameters <= 0:
        raise InputError(f"auto_learning_rate: parameters must be > 0, got {parameters}")
    value = 1e-5 * (GPT2_SMALL_PARAMETERS / parameters) ** 0.75 * (10 if lora else 1)
    value = min(2e-3, max(5e-6, value))
    return float(f"{value:.2g}")
