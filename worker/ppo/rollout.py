"""Rollouts: sample responses with pure sampling, then score them with the policy, the frozen
reference and the reward model.

Pure sampling (temperature 1, top_k 0, top_p 1, no min length, EOS allowed) keeps the sampled
distribution equal to the one whose log-probabilities PPO computes; anything else makes the KL
estimate wrong, often negative (trl #235, #925). Prompts are left-padded (generation continues
at the right end); response masks come from positions (`core.response_mask`), never from
`ids != pad_id`, because GPT-2's pad token is its EOS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from worker.ppo.core import logprobs_from_logits, response_mask
from worker.ppo.model import response_logits

ScoreFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
"""(prompts, responses) -> one reward-model score per pair, e.g. RewardScorer.score."""


@dataclass
class Rollout:
    """One batch of episodes. Queries are left-padded to Q, responses right-padded to T."""

    prompts: list[str]
    texts: list[str]                 # decoded responses (EOS removed)
    query_ids: torch.Tensor          # (B, Q)
    query_mask: torch.Tensor         # (B, Q)
    response_ids: torch.Tensor       # (B, T), padding after the first EOS set to pad_id
    mask: torch.Tensor               # (B, T) 1 on real response tokens, EOS included
    ended: torch.Tensor              # (B,) the response emitted an EOS
    logprobs: torch.Tensor           # (B, T) policy log p of each response token at rollout time
    ref_logprobs: torch.Tensor       # (B, T) frozen reference's log p
    values: torch.Tensor             # (B, T) value estimates at rollout time
    scores: torch.Tensor             # (B,) raw reward-model scores

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.mask], dim=1)


def encode_prompts(tokenizer, prompts: Sequence[str], max_prompt_tokens: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (ids, mask); prompts longer than max_prompt_tokens keep their end."""
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    batch = tokenizer(list(prompts), padding=True, truncation=True, max_length=max_prompt_tokens, return_tensors="pt")
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


@torch.no_grad()
def sample(lm, query_ids: torch.Tensor, query_mask: torch.Tensor, *, max_new_tokens: int, eos_token_id: int,
           pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure sampling. Returns (responses (B, max_new_tokens) padded after the first EOS, mask, ended)."""
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_new_tokens=0,
                              max_new_tokens=max_new_tokens, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
                              repetition_penalty=1.0, use_cache=True)
    out = lm.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=config)
    responses = out[:, query_ids.shape[1]:]
    mask, ended = response_mask(responses, eos_token_id)  # before padding: a pad (== eos) is no real EOS
    missing = max_new_tokens - responses.shape[1]
    if missing > 0:  # generate() stops when every sequence ended: pad to a fixed width
        responses = torch.cat([responses, responses.new_full((responses.shape[0], missing), pad_token_id)], dim=1)
        mask = torch.cat([mask, mask.new_zeros((mask.shape[0], missing))], dim=1)
    return responses.masked_fill(mask == 0, pad_token_id), mask, ended


@torch.no_grad()
def collect(model, ref_model, tokenizer, prompts: Sequence[str], score: ScoreFn, *, max_new_tokens: int,
            max_prompt_tokens: int, forward_batch_size: int, device, autocast=None) -> Rollout:
    """Generate and evaluate one batch of episodes with `model` (a PolicyValueModel, unwrapped)."""
    import contextlib

    autocast = autocast or contextlib.nullcontext
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    query_ids, query_mask = encode_prompts(tokenizer, prompts, max_prompt_tokens, device)
    Q = query_ids.shape[1]
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("resp", "mask", "ended", "logp", "ref", "values")}
    for start in range(0, len(prompts), forward_batch_size):
        q, qm = query_ids[start:start + forward_batch_size], query_mask[start:start + forward_batch_size]
        with autocast():
            resp, mask, ended = sample(model.policy, q, qm, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad)
            ids, attn = torch.cat([q, resp], 1), torch.cat([qm, mask], 1)
            logits, values = model(ids, attn, Q)
            logp = logprobs_from_logits(logits, resp)
            del logits
            ref_logp = logprobs_from_logits(response_logits(ref_model, ids, attn, Q), resp)
        for key, value in zip(parts, (resp, mask, ended, logp, ref_logp, values)):
            parts[key].append(value)
    cat = {k: torch.cat(v, 0) for k, v in parts.items()}
    T = max(int(cat["mask"].sum(1).max().item()), 1)  # drop columns that are padding everywhere
    m = cat["mask"][:, :T]
    texts = tokenizer.batch_decode(cat["resp"][:, :T], skip_special_tokens=True)
    scores = torch.tensor([float(s) for s in score(list(prompts), texts)], device=device)
    return Rollout(list(prompts), texts, query_ids, query_mask, cat["resp"][:, :T], m, cat["ended"],
                   cat["logp"][:, :T] * m, cat["ref"][:, :T] * m, cat["values"][:, :T] * m, scores)


@torch.no_grad()
def sample_texts(lm, tokenizer, prompts: Sequence[str], *, max_new_tokens: int, max_prompt_tokens: int,
                 batch_size: int, device, autocast=None) -> list[str]:
    """Responses to `prompts` by pure sampling, decoded (for the samples report and evaluation)."""
    import contextlib

    autocast = autocast or contextlib.nullcontext
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        q, qm = encode_prompts(tokenizer, prompts[start:start + batch_size], max_prompt_tokens, device)
        with autocast():
            resp, _, _ = sample(lm, q, qm, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id)
        out += tokenizer.batch_decode(resp, skip_special_tokens=True)
    return out
