"""GRPO and RLOO knobs, saved as grpo_config.json / rloo_config.json next to the policy they trained.

Both sample `num_generations` answers per prompt and baseline each answer's reward against its
group (GRPO: the group mean, scaled by its std; RLOO: the mean of the other answers), so neither
needs a value head. Both penalise KL to the starting policy with `beta`: TRL's GRPO defaults to
beta 0 (no KL), which a learned reward model would exploit, so prefloop sets it for both.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefloop.errors import InputError
from prefloop.knobs import knob
from worker.trainers.knobs import GuardKnobs


@dataclass(frozen=True)
class OnlineKnobs(GuardKnobs):
    label = "online RL config"

    # --- schedule --------------------------------------------------------------------------------
    steps: int = knob(40, "Optimizer steps; each samples num_generations answers for prompts_per_step prompts.")
    prompts_per_step: int = knob(8, "Prompts per step per process (each gets num_generations answers).")
    num_generations: int = knob(8, "Answers sampled per prompt: the group whose rewards baseline each other (>= 2).")
    num_iterations: int = knob(1, "Updates per batch of generations (>1 reuses them with the clipped ratio).")
    learning_rate: float = knob(1e-6, "AdamW learning rate (TRL's default; 1e-6 to 1e-5 for full fine-tuning).")
    max_grad_norm: float = knob(1.0, "Gradient clipping by global norm.")
    warmup_ratio: float = knob(0.0, "Fraction of the steps spent warming the learning rate up.")
    seed: int = knob(0, "Seed for prompt order, sampling and the KL measurement.")

    # --- sampling --------------------------------------------------------------------------------
    max_new_tokens: int = knob(50, "Tokens sampled per answer (pure sampling: temperature 1, top_k 0, top_p 1).")
    max_prompt_tokens: int = knob(192, "Prompts longer than this keep their last tokens.")
    temperature: float = knob(1.0, "Sampling temperature of the training generations.")

    # --- objective -------------------------------------------------------------------------------
    beta: float = knob(0.05, "KL coefficient against the starting policy (prefloop sets it; TRL's GRPO default is 0).")
    epsilon: float = knob(0.2, "Clip range of the policy ratio.")

    # --- KL guardrail and report -----------------------------------------------------------------
    logging_steps: int = knob(1, "Optimizer steps between two logged training rows.")

    def __post_init__(self) -> None:
        name = self.label.split()[0]
        for field in (
            "steps",
            "prompts_per_step",
            "num_iterations",
            "max_new_tokens",
            "max_prompt_tokens",
            "kl_check_steps",
            "kl_prompts",
            "logging_steps",
        ):
            if getattr(self, field) < 1:
                raise InputError(f"{name} config: {field} must be at least 1, got {getattr(self, field)}")
        if self.num_generations < 2:
            raise InputError(
                f"{name} config: num_generations must be at least 2 (answers baseline each other), "
                f"got {self.num_generations}"
            )
        if self.learning_rate <= 0 or self.beta < 0 or self.temperature <= 0 or self.epsilon <= 0:
            raise InputError(f"{name} config: learning_rate, temperature and epsilon must be > 0, beta >= 0")
        if self.kl_stop is not None and self.kl_stop <= 0:
            raise InputError(f"{name} config: kl_stop must be > 0 or None, got {self.kl_stop}")


@dataclass(frozen=True)
class GRPOKnobs(OnlineKnobs):
    label = "GRPO config"

    loss_type: str = knob("dapo", "TRL GRPO loss: dapo (TRL's default), grpo, dr_grpo, bnpo.")
    scale_rewards: str = knob("group", "Divide advantages by the reward std: group, batch or none (Dr. GRPO).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss_type not in ("dapo", "grpo", "dr_grpo", "bnpo"):
            raise InputError(f"GRPO config: loss_type must be dapo, grpo, dr_grpo or bnpo, got {self.loss_type!r}")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise InputError(f"GRPO config: scale_rewards must be group, batch or none, got {self.scale_rewards!r}")


@dataclass(frozen=True)
class RLOOKnobs(OnlineKnobs):
    label = "RLOO config"

    normalize_advantages: bool = knob(False, "Whiten the leave-one-out advantages over the batch.")
    reward_clip_range: float | None = knob(None, "Clip rewards to [-x, x] before the baseline (None: off).")
