"""The policy with a value head on its last hidden state (trlx's design): one backbone forward gives
both the next-token logits and the value of every response position.

A LoRA policy is a peft model around the causal LM: the backbone is reached through it (`backbone`),
and the reference is that policy with its adapter disabled (`reference_logits`).

Only the response positions go through the LM head: the prompt's logits are never needed, and at
GPT-2's 50k vocabulary they would cost more than the backbone itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so a left-padded prompt starts at 0, exactly as
    generate() numbers them. Without this a forward pass would shift every position by the padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


# `lm`, `ref`, `policy`: a transformers causal LM, or a peft model around one (Any, as in prefloop.models).
def backbone(lm: Any) -> nn.Module:
    """The transformer under a causal LM's head (GPT2Model, LlamaModel, ...), through a peft wrapper
    when the policy trains a LoRA adapter (its LoRA layers stay in place)."""
    inner = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    base: nn.Module = inner.base_model
    return base


def response_hidden(lm: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, query_len: int) -> torch.Tensor:
    """Hidden states (B, T, H) at the positions that predict the T response tokens after `query_len`."""
    out = backbone(lm)(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_for(attention_mask),
        use_cache=False,
    )
    hidden: torch.Tensor = out.last_hidden_state[:, query_len - 1 : -1]
    return hidden


def response_logits(lm: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, query_len: int) -> torch.Tensor:
    """Next-token logits (B, T, V) for the response positions of a causal LM (the reference policy)."""
    logits: torch.Tensor = lm.get_output_embeddings()(response_hidden(lm, input_ids, attention_mask, query_len))
    return logits


def reference_logits(
    ref: Any | None, policy: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, query_len: int
) -> torch.Tensor:
    """The frozen reference's response logits: a separate model (full fine-tuning), or with a LoRA
    policy (`ref` None) the policy's own base with the adapter disabled, so no second copy of the
    weights exists."""
    if ref is not None:
        return response_logits(ref, input_ids, attention_mask, query_len)
    with policy.disable_adapter():
        return response_logits(policy, input_ids, attention_mask, query_len)


class PolicyValueModel(nn.Module):
    """A causal LM plus a linear value head, wrapped together so `accelerator.prepare` (and DDP under
    `accelerate launch`) sees one module. Saving keeps only `policy`, a plain causal LM that
    generation loads through prefloop.models."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy
        hidden = policy.config.hidden_size
        self.value_head = nn.Linear(hidden, 1)
        # Zero init: values start at 0, so the first updates are driven by rewards, not head noise.
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.value_head.to(next(policy.parameters()).device)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, query_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, T, V), values (B, T)) for the T response positions after `query_len`."""
        h = response_hidden(self.policy, input_ids, attention_mask, query_len)
        logits = self.policy.get_output_embeddings()(h)
        values = self.value_head(h.to(self.value_head.weight.dtype)).squeeze(-1).float()
        return logits, values
