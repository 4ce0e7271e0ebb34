"""Rollouts: sample responses with pure sampling, then score them with the policy, the frozen
reference and the reward model.

Pure sampling (temperature 1, top_k 0, top_p 1, no min length, EOS allowed) keeps the sampled
distribution equal to the one whose log-probabilities PPO computes; anything else makes the KL
estimate wrong, often negative (trl #235, #925). Prompts are Conversations rendered by the policy's
tokenizer exactly as generation renders them (`family.generation_ids`), left-padded (generation
continues at the right end); a response ends at any of the model's EOS ids; response masks come
from positions (`core.response_mask`), never from `ids != pad_id`, because pad is often an EOS.
The reward model scores the decoded text (`family.decode_answer`), which it re-tokenizes with its
own tokenizer, so it need not share the policy's vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from prefloop.family import Conversation, decode_answer, generation_ids
from worker.ppo.core import logprobs_from_logits, response_mask
from worker.ppo.model import reference_logits

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from worker.ppo.model import PolicyValueModel

ScoreFn = Callable[[Sequence[Conversation | str], Sequence[str]], Sequence[float]]
"""(prompts, responses) -> one reward-model score per pair, e.g. RewardScorer.score."""


@dataclass
class Rollout:
    """One batch of episodes. Queries are left-padded to Q, responses right-padded to T."""

    prompts: list[Conversation | str]
    texts: list[str]  # decoded responses (EOS removed)
    query_ids: torch.Tensor  # (B, Q)
    query_mask: torch.Tensor  # (B, Q)
    response_ids: torch.Tensor  # (B, T), padding after the first EOS set to pad_id
    mask: torch.Tensor  # (B, T) 1 on real response tokens, EOS included
    ended: torch.Tensor  # (B,) the response emitted an EOS
    logprobs: torch.Tensor  # (B, T) policy log p of each response token at rollout time
    ref_logprobs: torch.Tensor  # (B, T) frozen reference's log p
    values: torch.Tensor  # (B, T) value estimates at rollout time
    scores: torch.Tensor  # (B,) raw reward-model scores

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.mask], dim=1)


def encode_prompts(
    tokenizer: Any,
    prompts: Sequence[Conversation | str],
    max_prompt_tokens: int,
    device: torch.device | str,
    *,
    pad_token_id: int,
    template: str = "",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (ids, mask) of the rendered prompts; longer than max_prompt_tokens keeps the end."""
    rows = [generation_ids(tokenizer, p, template)[-max_prompt_tokens:] for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[b, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def _ids(tokenizer: Any, lm: Any, eos: Sequence[int] | None, pad: int | None) -> tuple[list[int], int]:
    """(EOS ids, pad id): as given, else the family's (`prefloop.family`)."""
    from prefloop.family import eos_ids, pad_id

    return list(eos) if eos is not None else list(eos_ids(tokenizer, lm)), pad if pad is not None else pad_id(tokenizer)


def decode_responses(tokenizer: Any, responses: torch.Tensor, eos_ids: Sequence[int]) -> list[str]:
    """Response texts as generation stores answers: cut at the first EOS, no special tokens."""
    return [decode_answer(tokenizer, row.tolist(), eos_ids) for row in responses]


@torch.no_grad()
def sample(
    lm: Any,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure sampling. Returns (responses (B, max_new_tokens) padded after the first EOS, mask, ended)."""
    from transformers import GenerationConfig

    config = GenerationConfig(  # type: ignore[no-untyped-call]  # its __init__ takes unannotated **kwargs
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        min_new_tokens=0,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id if isinstance(eos_token_id, int) else list(eos_token_id),
        repetition_penalty=1.0,
        use_cache=True,
    )
    out = lm.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=config)
    responses = out[:, query_ids.shape[1] :]
    mask, ended = response_mask(responses, eos_token_id)  # before padding: a pad (== eos) is no real EOS
    missing = max_new_tokens - responses.shape[1]
    if missing > 0:  # generate() stops when every sequence ended: pad to a fixed width
        responses = torch.cat([responses, responses.new_full((responses.shape[0], missing), pad_token_id)], dim=1)
        mask = torch.cat([mask, mask.new_zeros((mask.shape[0], missing))], dim=1)
    return responses.masked_fill(mask == 0, pad_token_id), mask, ended


@torch.no_grad()
def collect(
    model: PolicyValueModel,
    ref_model: Any | None,
    tokenizer: Any,
    prompts: Sequence[Conversation | str],
    score: ScoreFn,
    *,
    max_new_tokens: int,
    max_prompt_tokens: int,
    forward_batch_size: int,
    device: torch.device | str,
    eos_ids: Sequence[int] | None = None,
    pad_token_id: int | None = None,
    autocast: Callable[[], AbstractContextManager[Any]] | None = None,
    template: str = "",
) -> Rollout:
    """Generate and evaluate one batch of episodes with `model` (a PolicyValueModel, unwrapped);
    `ref_model` None: the reference is the LoRA policy with its adapter disabled."""
    import contextlib

    autocast = autocast or contextlib.nullcontext
    eos, pad = _ids(tokenizer, model.policy, eos_ids, pad_token_id)
    query_ids, query_mask = encode_prompts(
        tokenizer, prompts, max_prompt_tokens, device, pad_token_id=pad, template=template
    )
    Q = query_ids.shape[1]
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("resp", "mask", "ended", "logp", "ref", "values")}
    for start in range(0, len(prompts), forward_batch_size):
        q, qm = query_ids[start : start + forward_batch_size], query_mask[start : start + forward_batch_size]
        with autocast():
            resp, mask, ended = sample(
                model.policy, q, qm, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad
            )
            ids, attn = torch.cat([q, resp], 1), torch.cat([qm, mask], 1)
            logits, values = model(ids, attn, Q)
            logp = logprobs_from_logits(logits, resp)
            del logits
            ref_logp = logprobs_from_logits(reference_logits(ref_model, model.policy, ids, attn, Q), resp)
        for key, value in zip(parts, (resp, mask, ended, logp, ref_logp, values)):
            parts[key].append(value)
    cat = {k: torch.cat(v, 0) for k, v in parts.items()}
    T = max(int(cat["mask"].sum(1).max().item()), 1)  # drop columns that are padding everywhere
    m = cat["mask"][:, :T]
    texts = decode_responses(tokenizer, cat["resp"][:, :T], eos)
    scores = torch.tensor([float(s) for s in score(list(prompts), texts)], device=device)
    return Rollout(
        list(prompts),
        texts,
        query_ids,
        query_mask,
        cat["resp"][:, :T],
        m,
        cat["ended"],
        cat["logp"][:, :T] * m,
        cat["ref"][:, :T] * m,
        cat["values"][:, :T] * m,
        scores,
    )


@torch.no_grad()
def sample_texts(
    lm: Any,
    tokenizer: Any,
    prompts: Sequence[Conversation | str],
    *,
    max_new_tokens: int,
    max_prompt_tokens: int,
    batch_size: int,
    device: torch.device | str,
    eos_ids: Sequence[int] | None = None,
    pad_token_id: int | None = None,
    autocast: Callable[[], AbstractContextManager[Any]] | None = None,
    template: str = "",
) -> list[str]:
    """Responses to `prompts` by pure sampling, decoded (for the samples report and evaluation)."""
    import contextlib

    autocast = autocast or contextlib.nullcontext
    eos_ids, pad_token_id = _ids(tokenizer, lm, eos_ids, pad_token_id)
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        q, qm = encode_prompts(
            tokenizer,
            prompts[start : start + batch_size],
            max_prompt_tokens,
            device,
            pad_token_id=pad_token_id,
            template=template,
        )
        with autocast():
            resp, _, _ = sample(
                lm, q, qm, max_new_tokens=max_new_tokens, eos_token_id=list(eos_ids), pad_token_id=pad_token_id
            )
        out += decode_responses(tokenizer, resp, eos_ids)
    return out
