"""The mathematics of PPO for language models, as small pure functions on tensors.

Shapes: B episodes, T response positions. `mask` (B, T) is 1 on real response tokens (the EOS that
ends a response included) and 0 on the padding after it; real tokens always form a prefix, so
padding is trailing. Everything here is unit-tested against hand-computed values
(tests/test_ppo_math.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / std over the masked entries; padding comes back as 0."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(values.dtype)


def response_mask(responses: torch.Tensor, eos_token_id: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask (B, T) of real response tokens built from positions: everything up to and including the
    first EOS (any of the ids, when the model lists several: end of turn, end of text). With
    pad == eos, `responses != pad_id` would drop the EOS that ends a response (and so never train
    the model to stop); this keeps it. Returns (mask, ended) where ended (B,) tells which responses
    emitted an EOS."""
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    is_eos = torch.isin(responses, torch.tensor(ids, device=responses.device))  # (B, T)
    ended = is_eos.any(dim=1)
    T = responses.shape[1]
    first = torch.where(ended, is_eos.int().argmax(dim=1), torch.full_like(ended, T - 1, dtype=torch.long))
    positions = torch.arange(T, device=responses.device).unsqueeze(0)
    return (positions <= first.unsqueeze(1)).long(), ended


def per_token_rewards(
    scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """r_t = -beta * (logp_t - logp_ref_t) on every real token, plus the score on the last one.
    Returns (rewards, kl) both (B, T), zero on padding."""
    m = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * m
    rewards = -kl_coef * kl
    last = (mask.sum(dim=1) - 1).clamp(min=0).long()  # (B,) index of the last real token
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a response (the value after the last token is 0).
    delta_t = r_t + gamma V_{t+1} - V_t;  A_t = delta_t + gamma lam A_{t+1};  returns = A + V.
    Padding is zeroed first, so it contributes nothing to the real tokens before it."""
    m = mask.to(values.dtype)
    rewards, values = rewards * m, values * m
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * m
    return advantages, (advantages + values) * m


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate: mean over real tokens of max(-A r, -A clip(r, 1-eps, 1+eps)).
    Returns (loss, clipfrac, approx_kl) where approx_kl = mean 0.5 (log r)^2."""
    log_ratio = (logprobs - old_logprobs) * mask.to(logprobs.dtype)
    ratio = torch.exp(log_ratio)
    losses = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(losses, clipped), mask)
    clipfrac = masked_mean((clipped > losses).to(logprobs.dtype), mask)
    approx_kl = masked_mean(0.5 * log_ratio**2, mask)
    return loss, clipfrac.detach(), approx_kl.detach()


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 * mean over real tokens of max((V - R)^2, (clip(V, V_old +- eps) - R)^2). Returns (loss, clipfrac)."""
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    loss1 = (values - returns) ** 2
    loss2 = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(loss1, loss2), mask)
    clipfrac = masked_mean((loss2 > loss1).to(values.dtype), mask)
    return loss, clipfrac.detach()


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (B, T) of the categorical distributions given by logits (B, T, V)."""
    logits = logits.float()
    log_z = torch.logsumexp(logits, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    return log_z - (probs * logits).sum(dim=-1)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) (B, T) from logits (B, T, V), in fp32 without materialising log_softmax."""
    logits = logits.float()
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


class AdaptiveKLController:
    """Ziegler et al. (2019): beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


class FixedKLController:
    def __init__(self, init_kl_coef: float):
        self.value = init_kl_coef

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


def kl_controller(init_kl_coef: float, target: float | None, horizon: int) -> AdaptiveKLController | FixedKLController:
    return AdaptiveKLController(init_kl_coef, target, horizon) if target else FixedKLController(init_kl_coef)


@dataclass
class RunningMoments:
    """Running mean and std of scores across rollout batches (Chan et al.'s parallel update)."""

    mean: float = 0.0
    var: float = 1.0
    count: float = 1e-24

    def update(self, xs: torch.Tensor) -> None:
        xs = xs.detach().double().flatten()
        n = xs.numel()
        if n == 0:
            return
        batch_mean = xs.mean().item()
        batch_var = xs.var(unbiased=False).item()
        delta = batch_mean - self.mean
        total = self.count + n
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def normalize(self, xs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        return (xs - self.mean) / max(self.std, eps)
