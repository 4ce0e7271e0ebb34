"""Scoring with a published reward model: inference only (no training code), shared by the backend's
/predict and reward endpoint and by the workers' PPO and evaluation.

Texts are right-padded in batches; the sequence-classification head pools at the last non-pad
token (transformers finds it from `config.pad_token_id`). The probability that the left answer is
preferred is the Bradley-Terry sigmoid(r_left - r_right).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from prefloop.models import load_reward_model, load_tokenizer, resolve_device
from prefloop.text import reward_text


class RewardScorer:
    def __init__(self, source: str | Path, *, device: str = "auto", batch_size: int = 16, max_length: int | None = None):
        self.source = str(source)
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(source, padding_side="right")
        self.model = load_reward_model(source, device=self.device, pad_token_id=self.tokenizer.pad_token_id)
        self.batch_size = batch_size
        self.max_length = max_length or getattr(self.model.config, "n_positions", None) or self.tokenizer.model_max_length

    def rewards(self, texts: Sequence[str]) -> list[float]:
        import torch

        out: list[float] = []
        # Longest first keeps padding small inside each batch; results are put back in order.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        scores = [0.0] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                logits = self.model(**batch).logits[:, 0].float().cpu().tolist()  # (B,)
                for i, value in zip(idx, logits):
                    scores[i] = value
        out.extend(scores)
        return out

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return self.rewards([reward_text(p, r) for p, r in zip(prompts, responses)])

    def prefer(self, prompts: Sequence[str], left: Sequence[str], right: Sequence[str]) -> list[tuple[str, float]]:
        """For each pair: ("left"|"right", probability of that pick)."""
        n = len(prompts)
        rewards = self.score(list(prompts) * 2, list(left) + list(right))
        picks = []
        for i in range(n):
            p_left = 1.0 / (1.0 + math.exp(-(rewards[i] - rewards[n + i])))
            picks.append(("left", p_left) if p_left >= 0.5 else ("right", 1.0 - p_left))
        return picks
