"""Every DPO knob in one dataclass, saved as dpo_config.json next to the policy it trained.

Defaults follow TRL's DPO recipe (sigmoid loss, beta 0.1, the starting policy as the frozen
reference) with a learning rate for full fine-tuning at GPT-2 scale. A job may override any field
by name (`prefloop train-policy --trainer dpo --set beta=0.2`); unknown names are an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefloop.errors import InputError
from prefloop.knobs import knob
from worker.trainers.knobs import GuardKnobs

LOSSES = ("sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down")


@dataclass(frozen=True)
class DPOKnobs(GuardKnobs):
    label = "DPO config"

    # --- data ------------------------------------------------------------------------------------
    min_pairs: int = knob(8, "Fewer usable preference pairs than this: the run is skipped.")
    on_policy: bool = knob(
        False,
        "Iterative DPO: train only on pairs whose answers the current policy wrote "
        "(data.prefloop.policy_version of the task), not on older policies' answers.",
    )
    max_length: int = knob(
        512,
        "Longest prompt + answer in tokens (capped at the model's context length); "
        "longer sequences are truncated at the end, prompts that alone fill it are dropped.",
    )

    # --- schedule --------------------------------------------------------------------------------
    num_train_epochs: float = knob(1.0, "Passes over the pairs.")
    max_steps: int = knob(0, "Optimizer steps (0: num_train_epochs decides).")
    per_device_train_batch_size: int = knob(8, "Pairs per step per process (chosen and rejected go in one forward).")
    gradient_accumulation_steps: int = knob(1, "Steps accumulated before an optimizer update.")
    learning_rate: float = knob(1e-6, "AdamW learning rate (TRL's DPO default; 5e-7 to 5e-6 for full fine-tuning).")
    warmup_ratio: float = knob(0.0, "Fraction of the steps spent warming the learning rate up.")
    weight_decay: float = knob(0.0, "AdamW weight decay.")
    max_grad_norm: float = knob(1.0, "Gradient clipping by global norm.")
    seed: int = knob(0, "Seed for data order, sampling and the KL measurement.")

    # --- loss ------------------------------------------------------------------------------------
    beta: float = knob(0.1, "DPO's beta: the implicit KL weight against the reference (higher: stays closer).")
    loss_type: str = knob(
        "sigmoid", "TRL loss: sigmoid (DPO), hinge, ipo, robust, bco_pair, sppo_hard, nca_pair, apo_zero, apo_down."
    )
    label_smoothing: float = knob(0.0, "Robust DPO: the assumed probability that a label is flipped (0: off).")

    # --- KL guardrail and report -----------------------------------------------------------------
    max_new_tokens: int = knob(50, "Tokens sampled per response for the KL measurement and samples.json.")
    max_prompt_tokens: int = knob(192, "Prompts longer than this keep their last tokens when sampling.")
    logging_steps: int = knob(5, "Optimizer steps between two logged training rows.")

    def __post_init__(self) -> None:
        for name in (
            "min_pairs",
            "max_length",
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "kl_check_steps",
            "kl_prompts",
            "max_new_tokens",
            "max_prompt_tokens",
            "logging_steps",
        ):
            if getattr(self, name) < 1:
                raise InputError(f"DPO config: {name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.beta <= 0 or self.num_train_epochs <= 0 or self.max_steps < 0:
            raise InputError("DPO config: learning_rate, beta and num_train_epochs must be > 0, max_steps >= 0")
        if self.loss_type not in LOSSES:
            raise InputError(f"DPO config: loss_type must be one of {', '.join(LOSSES)}, got {self.loss_type!r}")
        if not 0 <= self.label_smoothing < 0.5:
            raise InputError(f"DPO config: label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.kl_stop is not None and self.kl_stop <= 0:
            raise InputError(f"DPO config: kl_stop must be > 0 or None, got {self.kl_stop}")
