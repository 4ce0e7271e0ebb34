"""Every PPO knob in one dataclass, saved as ppo_config.json next to the policy it trained.

Defaults follow trlx's GPT-2 recipe and "The N+ Implementation Details of RLHF with PPO"
(Huang et al., 2024): pure sampling for rollouts, per-token KL penalty against a frozen reference,
adaptive KL (Ziegler et al.), GAE with gamma 1 and lambda 0.95, whitened advantages, clipped policy
and value losses, several PPO epochs per batch of rollouts. A job may override any field by name
(`prefloop train-ppo --set steps=50`); unknown names are an error, not silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefloop.errors import InputError
from prefloop.knobs import Knobs
from prefloop.knobs import knob as _knob


@dataclass(frozen=True)
class PPOConfig(Knobs):
    label = "PPO config"

    # --- schedule --------------------------------------------------------------------------------
    steps: int = _knob(20, "PPO iterations: each generates rollout_batch_size episodes, then trains on them.")
    rollout_batch_size: int = _knob(64, "Episodes (prompt + sampled response) per iteration, per process.")
    mini_batch_size: int = _knob(16, "Episodes per optimizer step (rollout_batch_size must be a multiple).")
    micro_batch_size: int = _knob(16, "Episodes per forward/backward pass; gradients accumulate up to mini_batch_size.")
    forward_batch_size: int = _knob(64, "Episodes per generate() call and per no-grad forward pass (memory knob only).")
    ppo_epochs: int = _knob(4, "Passes over each batch of rollouts (fresh shuffle each pass).")
    learning_rate: float = _knob(1e-5, "AdamW learning rate (trlx GPT-2: 3e-5; smaller is safer for full fine-tuning).")
    weight_decay: float = _knob(0.0, "AdamW weight decay.")
    adam_eps: float = _knob(1e-5, "AdamW epsilon (N+ details: 1e-5).")
    max_grad_norm: float = _knob(1.0, "Gradient clipping by global norm (0: off).")
    seed: int = _knob(0, "Seed for sampling, shuffling and the value head's initialisation.")

    # --- rollouts --------------------------------------------------------------------------------
    max_new_tokens: int = _knob(50, "Tokens sampled per response (pure sampling: temperature 1, top_k 0, top_p 1).")
    max_prompt_tokens: int = _knob(192, "Prompts longer than this keep their last tokens.")
    missing_eos_penalty: float | None = _knob(
        None, "Subtracted from the score of responses that never emit EOS (None: off)."
    )

    # --- reward ----------------------------------------------------------------------------------
    normalize_reward: bool = _knob(
        True, "Whiten scores with running mean/std across iterations, so KL and score scales stay comparable."
    )
    reward_clip: float = _knob(10.0, "Clip (normalised) scores to [-reward_clip, reward_clip] (0: off).")

    # --- KL --------------------------------------------------------------------------------------
    init_kl_coef: float = _knob(0.05, "Initial beta of the per-token KL penalty -beta * (logp - logp_ref).")
    target_kl: float | None = _knob(6.0, "Target KL (nats per response) of the adaptive controller; None: fixed beta.")
    horizon: int = _knob(
        10000, "Adaptive controller horizon in episodes: beta *= 1 + clip(KL/target - 1, +-0.2) * n / horizon."
    )
    kl_stop: float | None = _knob(
        20.0,
        "Stop when a rollout's KL (nats per response) passes this bound; the policy "
        "from before the bound was passed is kept. None: never.",
    )

    # --- advantages and losses -------------------------------------------------------------------
    gamma: float = _knob(1.0, "Discount of GAE (1: no discount within a response).")
    lam: float = _knob(0.95, "Lambda of GAE.")
    whiten_advantages: bool = _knob(True, "Whiten advantages over the batch's real response tokens.")
    cliprange: float = _knob(0.2, "Clip range of the policy ratio.")
    cliprange_value: float = _knob(0.2, "Clip range of value predictions around their rollout values.")
    vf_coef: float = _knob(0.1, "Weight of the value loss against the policy loss.")
    entropy_coef: float = _knob(0.0, "Weight of an entropy bonus (0: none, as in trlx).")

    # --- reporting -------------------------------------------------------------------------------
    sample_prompts: int = _knob(4, "Prompts whose responses before and after training go into samples.json.")

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "rollout_batch_size",
            "mini_batch_size",
            "micro_batch_size",
            "forward_batch_size",
            "ppo_epochs",
            "max_new_tokens",
            "max_prompt_tokens",
            "horizon",
        ):
            if getattr(self, name) < 1:
                raise InputError(f"PPO config: {name} must be at least 1, got {getattr(self, name)}")
        if self.rollout_batch_size % self.mini_batch_size or self.mini_batch_size % self.micro_batch_size:
            raise InputError(
                "PPO config: rollout_batch_size must be a multiple of mini_batch_size, and "
                "mini_batch_size a multiple of micro_batch_size "
                f"(got {self.rollout_batch_size}, {self.mini_batch_size}, {self.micro_batch_size})"
            )
        if self.learning_rate <= 0 or self.init_kl_coef < 0 or not 0 <= self.lam <= 1 or not 0 < self.gamma <= 1:
            raise InputError("PPO config: learning_rate must be > 0, init_kl_coef >= 0, lam in [0, 1], gamma in (0, 1]")
        if self.target_kl is not None and self.target_kl <= 0:
            raise InputError(f"PPO config: target_kl must be > 0 or None, got {self.target_kl}")

    @property
    def grad_accumulation(self) -> int:
        return self.mini_batch_size // self.micro_batch_size
