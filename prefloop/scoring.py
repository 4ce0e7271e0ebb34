"""Scoring with a reward model: inference only (no training code), shared by the backend's /predict
and /reward, by reward training's evaluation and by PPO.

One convention everywhere, so a served score equals the score training computed:
- the text is `text.reward_text(prompt, response)`, tokenized by `tokenize` (the tokenizer's own
  special tokens, no EOS appended);
- sequences are right-padded with the tokenizer's pad token (GPT-2: pad = eos, set by
  `prefloop.models`), and the sequence-classification head pools at the last non-pad token
  (transformers finds it from `config.pad_token_id`);
- training drops pairs longer than its max_length (TRL's rule); serving truncates from the left
  instead, so the end of a long response is still what gets scored.
The probability that the left answer is preferred is the Bradley-Terry sigmoid(r_left - r_right).

Tasks are scored on the worker (worker/predictions.py), which writes the picks into Label Studio
and into prefloop/prediction_store.py; the web tier's /predict only looks them up.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefloop.family import context_length
from prefloop.models import fused_gelu, load_reward_model, load_tokenizer, resolve_device
from prefloop.text import reward_text


def tokenize(tokenizer, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Token ids of reward texts, unpadded; truncated (from the tokenizer's truncation side) only
    when `max_length` is given."""
    if not texts:
        return []
    enc = tokenizer(list(texts), truncation=max_length is not None, max_length=max_length)
    return [list(ids) for ids in enc["input_ids"]]


def pad_batch(ids: Sequence[Sequence[int]], pad_token_id: int, device: Any = None):
    """Right-pad token id lists into (input_ids, attention_mask), both (B, T)."""
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, :len(seq)] = 1
    return input_ids.to(device), mask.to(device)


def rewards_from_ids(model, ids: Sequence[Sequence[int]], *, pad_token_id: int, batch_size: int = 16,
                     device: Any = None) -> list[float]:
    """One reward per sequence, in input order. Longest first, so each batch pads little."""
    import torch

    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    scores = [0.0] * len(ids)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                input_ids, mask = pad_batch([ids[i] for i in idx], pad_token_id, device)
                logits = model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().cpu().tolist()  # (B,)
                for i, value in zip(idx, logits):
                    scores[i] = value
    finally:
        model.train(was_training)
    return scores


def preference_probability(reward_left: float, reward_right: float) -> float:
    """Bradley-Terry: P(left preferred)."""
    diff = reward_left - reward_right
    if diff >= 0:
        return 1.0 / (1.0 + math.exp(-diff))
    e = math.exp(diff)
    return e / (1.0 + e)


class RewardScorer:
    """A published reward model loaded once (per process, through a ModelCache) and shared by
    request threads: calls are serialised, because one model already uses every core and a fast
    tokenizer must not be driven from two threads at once."""

    def __init__(self, source: str | Path, *, device: str = "auto", batch_size: int = 16, max_length: int | None = None):
        """`batch_size`: sequences per forward pass in `rewards`/`score`, pairs per forward pass in `prefer`."""
        self.source = str(source)
        self.version = Path(source).name
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(source, padding_side="right")
        self.tokenizer.truncation_side = "left"  # keep the end of the response when a text is too long
        self.model = fused_gelu(load_reward_model(source, device=self.device, pad_token_id=self.tokenizer.pad_token_id))
        self.batch_size = batch_size
        self.max_length = max_length or context_length(self.model.config, self.tokenizer)
        self._lock = threading.Lock()

    def rewards(self, texts: Sequence[str]) -> list[float]:
        with self._lock:
            ids = tokenize(self.tokenizer, texts, self.max_length)
            return rewards_from_ids(self.model, ids, pad_token_id=self.tokenizer.pad_token_id,
                                    batch_size=self.batch_size, device=self.device)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return self.rewards([reward_text(p, r) for p, r in zip(prompts, responses)])

    def prefer(self, prompts: Sequence[str], left: Sequence[str], right: Sequence[str]) -> list[tuple[str, float]]:
        """For each pair: ("left"|"right", probability of that pick), scored in batches of
        `batch_size` pairs, both sides of a pair in the same batch."""
        m = len(prompts)
        out: list[tuple[str, float]] = [("left", 0.5)] * m
        if not m:
            return out
        with self._lock:
            texts = [reward_text(prompts[k], left[k]) for k in range(m)]
            texts += [reward_text(prompts[k], right[k]) for k in range(m)]
            ids = tokenize(self.tokenizer, texts, self.max_length)
            order = sorted(range(m), key=lambda k: -max(len(ids[k]), len(ids[m + k])))
            for start in range(0, m, self.batch_size):  # batch_size pairs: 2 * batch_size sequences per forward
                chunk = order[start:start + self.batch_size]
                rewards = rewards_from_ids(self.model, [ids[k] for k in chunk] + [ids[m + k] for k in chunk],
                                           pad_token_id=self.tokenizer.pad_token_id, batch_size=len(chunk) * 2,
                                           device=self.device)
                for j, k in enumerate(chunk):
                    p_left = preference_probability(rewards[j], rewards[len(chunk) + j])
                    out[k] = ("left", p_left) if p_left >= 0.5 else ("right", 1.0 - p_left)
        return out
