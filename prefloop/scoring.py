"""Scoring with a reward model: inference only (no training code), shared by the backend's /predict
and /reward, by reward training's evaluation and by PPO.

One convention everywhere, so a served score equals the score training computed:
- a prompt is a `prefloop.family.Conversation` (or a plain prompt string), rendered with the
  answer by the reward model's own tokenizer (`family.scoring_ids`: its chat template with the
  answer as the last assistant turn, or prompt + " " + answer for models without one, e.g. GPT-2
  and BERT). The reward model need not be the policy: PPO decodes the policy's text and scores it
  here, re-tokenized by this tokenizer. The CHAT_TEMPLATE a version was trained with is stored in
  it (`RENDERING_FILE`) and used when it serves;
- sequences are right-padded with the family's pad id (`family.pad_id`), and the
  sequence-classification head pools where its architecture does (the last non-pad token for
  causal LMs, [CLS] for BERT-style encoders);
- training drops pairs longer than its max_length (TRL's rule); serving truncates from the left
  instead, so the end of a long response is still what gets scored.
The probability that the left answer is preferred is the Bradley-Terry sigmoid(r_left - r_right).

Tasks are scored on the worker (worker/predictions.py), which writes the picks into Label Studio
and into prefloop/prediction_store.py; the web tier's /predict only looks them up.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefloop.artifacts import read_json
from prefloop.family import PADDING_SIDE, Conversation, context_length, pad_id, scoring_ids
from prefloop.models import fused_gelu, load_reward_model, load_tokenizer, resolve_device

RENDERING_FILE = "rendering.json"
"""{"chat_template": CHAT_TEMPLATE at training time}, saved in every reward version."""


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Token ids of reward texts, unpadded; truncated (from the tokenizer's truncation side) only
    when `max_length` is given."""
    if not texts:
        return []
    enc = tokenizer(list(texts), truncation=max_length is not None, max_length=max_length)
    return [list(ids) for ids in enc["input_ids"]]


def pad_batch(ids: Sequence[Sequence[int]], pad_token_id: int, device: Any = None) -> tuple[Any, Any]:
    """Right-pad token id lists into (input_ids, attention_mask), both (B, T)."""
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids.to(device), mask.to(device)


def rewards_from_ids(
    model: Any, ids: Sequence[Sequence[int]], *, pad_token_id: int, batch_size: int = 16, device: Any = None
) -> list[float]:
    """One reward per sequence, in input order. Longest first, so each batch pads little."""
    import torch

    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    scores = [0.0] * len(ids)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                input_ids, mask = pad_batch([ids[i] for i in idx], pad_token_id, device)
                logits = model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float().cpu().tolist()  # (B,)
                for i, value in zip(idx, logits, strict=True):
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

    def __init__(
        self,
        source: str | Path,
        *,
        device: str = "auto",
        batch_size: int = 16,
        max_length: int | None = None,
        template: str | None = None,
    ):
        """`batch_size`: sequences per forward pass in `rewards`/`score`, pairs per forward pass in
        `prefer`. `template`: CHAT_TEMPLATE (None: the one the version was trained with)."""
        self.source = str(source)
        self.version = Path(source).name
        self.device = resolve_device(device)
        self.tokenizer = load_tokenizer(source, padding_side=PADDING_SIDE["score"])
        self.tokenizer.truncation_side = "left"  # keep the end of the response when a text is too long
        self.pad_id = pad_id(self.tokenizer)
        self.model = fused_gelu(load_reward_model(source, device=self.device, pad_token_id=self.pad_id))
        self.batch_size = batch_size
        self.max_length = max_length or context_length(self.model.config, self.tokenizer)
        self.template = template if template is not None else read_rendering(source)
        self._lock = threading.Lock()

    def ids(self, prompts: Sequence[Conversation | str], responses: Sequence[str]) -> list[list[int]]:
        """Token ids of each (prompt, response) as this reward model scores them."""
        return [
            scoring_ids(self.tokenizer, p, r, self.template, self.max_length)
            for p, r in zip(prompts, responses, strict=True)
        ]

    def rewards(self, texts: Sequence[str], *, deadline: float | None = None) -> list[Any]:
        """One reward per text. With `deadline` (time.monotonic()), texts are tokenized and scored one
        batch at a time, longest first, and those not reached when it passes come back as None: the
        budget covers tokenization, not only the forward passes."""
        with self._lock:
            if deadline is None:
                ids = tokenize(self.tokenizer, texts, self.max_length)
                return rewards_from_ids(
                    self.model, ids, pad_token_id=self.pad_id, batch_size=self.batch_size, device=self.device
                )
            out: list[float | None] = [None] * len(texts)
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            for start in range(0, len(order), self.batch_size):
                if time.monotonic() > deadline:
                    break
                idx = order[start : start + self.batch_size]
                ids = tokenize(self.tokenizer, [texts[i] for i in idx], self.max_length)
                values = rewards_from_ids(
                    self.model, ids, pad_token_id=self.pad_id, batch_size=len(idx), device=self.device
                )
                for i, value in zip(idx, values, strict=True):
                    out[i] = value
            return out

    def score(
        self, prompts: Sequence[Conversation | str], responses: Sequence[str], *, deadline: float | None = None
    ) -> list[Any]:
        """One reward per (prompt, response); with `deadline`, as in `rewards` (None once it passed)."""
        with self._lock:
            if deadline is None:
                return rewards_from_ids(
                    self.model,
                    self.ids(prompts, responses),
                    pad_token_id=self.pad_id,
                    batch_size=self.batch_size,
                    device=self.device,
                )
            out: list[float | None] = [None] * len(prompts)
            order = sorted(range(len(prompts)), key=lambda i: -len(responses[i]))
            for start in range(0, len(order), self.batch_size):
                if time.monotonic() > deadline:
                    break
                idx = order[start : start + self.batch_size]
                values = rewards_from_ids(
                    self.model,
                    self.ids([prompts[i] for i in idx], [responses[i] for i in idx]),
                    pad_token_id=self.pad_id,
                    batch_size=len(idx),
                    device=self.device,
                )
                for i, value in zip(idx, values, strict=True):
                    out[i] = value
            return out

    def prefer(
        self, prompts: Sequence[Conversation | str], left: Sequence[str], right: Sequence[str]
    ) -> list[tuple[str, float]]:
        """For each pair: ("left"|"right", probability of that pick), scored in batches of
        `batch_size` pairs, both sides of a pair in the same batch."""
        m = len(prompts)
        out: list[tuple[str, float]] = [("left", 0.5)] * m
        if not m:
            return out
        with self._lock:
            ids = self.ids(list(prompts) + list(prompts), list(left) + list(right))
            order = sorted(range(m), key=lambda k: -max(len(ids[k]), len(ids[m + k])))
            for start in range(0, m, self.batch_size):  # batch_size pairs: 2 * batch_size sequences per forward
                chunk = order[start : start + self.batch_size]
                rewards = rewards_from_ids(
                    self.model,
                    [ids[k] for k in chunk] + [ids[m + k] for k in chunk],
                    pad_token_id=self.pad_id,
                    batch_size=len(chunk) * 2,
                    device=self.device,
                )
                for j, k in enumerate(chunk):
                    p_left = preference_probability(rewards[j], rewards[len(chunk) + j])
                    out[k] = ("left", p_left) if p_left >= 0.5 else ("right", 1.0 - p_left)
        return out

    def rank(
        self, prompts: Sequence[Conversation | str], answers: Sequence[Sequence[str]]
    ) -> list[tuple[list[int], float]]:
        """For each prompt and its answers: (answer indices best first, confidence of that order), the
        confidence being the Bradley-Terry probability of its least certain adjacent step
        (`order_confidence`). Every answer is scored once, in batches of `batch_size` sequences."""
        flat_prompts = [p for p, group in zip(prompts, answers, strict=True) for _ in group]
        rewards = self.score(flat_prompts, [a for group in answers for a in group])
        out, start = [], 0
        for group in answers:
            values = [float(r) for r in rewards[start : start + len(group)]]
            start += len(group)
            order = sorted(range(len(values)), key=lambda i: -values[i])  # stable: ties keep the shown order
            out.append((order, order_confidence([values[i] for i in order])))
        return out


def order_confidence(ordered_rewards: Sequence[float]) -> float:
    """How sure the model is of an order (rewards best first): the probability of its closest
    adjacent pair, in [0.5, 1]; for two answers exactly the probability of the pick."""
    return min(
        (preference_probability(a, b) for a, b in zip(ordered_rewards, ordered_rewards[1:])),
        default=1.0,
    )


def read_rendering(source: str | Path) -> str:
    """The CHAT_TEMPLATE a reward version was trained with ("" when none, or for older versions)."""
    data = read_json(Path(source) / RENDERING_FILE, {})
    return str(data.get("chat_template") or "") if isinstance(data, dict) else ""
