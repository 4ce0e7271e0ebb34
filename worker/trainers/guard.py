"""KL to the starting policy, measured the same way for every trainer, and the guardrail that
stops a run which passes its bound.

The measure: sample one response per prompt from the policy by pure sampling (temperature 1,
top_k 0, top_p 1: the distribution whose log-probabilities are scored), then
KL = sum over the response's real tokens of log p_policy - log p_start, averaged over responses
(nats per response), an unbiased estimate of KL(policy || start). The start is a frozen copy of
the starting policy, or, under LoRA, the same model with its adapter disabled. Under several
processes each measures its share of the prompts and the mean is taken over all of them, so every
process takes the same stop decision.

`KLGuard` is a transformers TrainerCallback for TRL's trainers (DPO, GRPO, RLOO): every
`every` optimizer steps it measures the KL; past `bound` it restores the trainable weights from
the last check that was within the bound and stops training. PPO keeps its own per-rollout guard
(worker/ppo/trainer.py), with the same rule.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)


def _reference_context(policy: Any, reference: Any) -> contextlib.AbstractContextManager[Any]:
    if reference is None:  # LoRA: the starting policy is the base with the adapter switched off
        disabled: contextlib.AbstractContextManager[Any] = policy.disable_adapter()
        return disabled
    return contextlib.nullcontext()


def encode_conversations(
    tokenizer: Any, convs: Sequence[Any], *, template: str, max_prompt_tokens: int, device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (ids, mask) of the generation prompts (prefloop.family's rendering); a prompt
    longer than max_prompt_tokens keeps its end."""
    from prefloop import family

    rows = [family.generation_ids(tokenizer, c, template)[-max_prompt_tokens:] for c in convs]
    width, pad = max(len(r) for r in rows), family.pad_id(tokenizer)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def sample_responses(
    lm: Any, tokenizer: Any, convs: Sequence[Any], *, max_new_tokens: int, max_prompt_tokens: int, template: str = ""
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Pure sampling: (query ids, query mask, response ids, response mask (EOS included), answers)."""
    from transformers import GenerationConfig

    from prefloop import family

    device = next(lm.parameters()).device
    q, qm = encode_conversations(
        tokenizer, convs, template=template, max_prompt_tokens=max_prompt_tokens, device=device
    )
    stop = list(family.eos_ids(tokenizer, lm))
    config = GenerationConfig(  # type: ignore[no-untyped-call]  # its __init__ takes unannotated **kwargs
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        min_new_tokens=0,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop,
        pad_token_id=family.pad_id(tokenizer),
        repetition_penalty=1.0,
        use_cache=True,
    )
    resp = lm.generate(input_ids=q, attention_mask=qm, generation_config=config)[:, q.shape[1] :]
    is_stop = torch.zeros_like(resp, dtype=torch.bool)
    for token in stop:
        is_stop |= resp == token
    # real tokens: everything up to and including the first stop token (pad may equal EOS)
    mask = (torch.cumsum(is_stop.long(), dim=1) - is_stop.long() == 0).long()
    answers = [family.decode_answer(tokenizer, row.tolist(), stop) for row in resp]
    return q, qm, resp, mask, answers


def sample_texts(
    lm: Any,
    tokenizer: Any,
    convs: Sequence[Any],
    *,
    max_new_tokens: int,
    max_prompt_tokens: int,
    template: str = "",
    batch_size: int = 32,
    seed: int = 0,
) -> list[str]:
    """Answers to `convs` by pure sampling with a fixed seed (samples.json, evaluation)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    was_training = lm.training
    lm.eval()
    try:
        out: list[str] = []
        for start in range(0, len(convs), batch_size):
            out += sample_responses(
                lm,
                tokenizer,
                convs[start : start + batch_size],
                max_new_tokens=max_new_tokens,
                max_prompt_tokens=max_prompt_tokens,
                template=template,
            )[4]
        return out
    finally:
        torch.random.set_rng_state(state)
        lm.train(was_training)


def _response_logprobs(
    lm: Any, ids: torch.Tensor, attn: torch.Tensor, query_len: int, tokens: torch.Tensor
) -> torch.Tensor:
    from worker.ppo.core import logprobs_from_logits
    from worker.ppo.model import position_ids_for

    logits = lm(input_ids=ids, attention_mask=attn, position_ids=position_ids_for(attn), use_cache=False).logits
    return logprobs_from_logits(logits[:, query_len - 1 : -1].float(), tokens)


@torch.no_grad()
def measure_kl(
    policy: Any,
    reference: Any,
    tokenizer: Any,
    convs: Sequence[Any],
    *,
    max_new_tokens: int,
    max_prompt_tokens: int,
    template: str = "",
    batch_size: int = 32,
    seed: int = 0,
    accelerator: Any = None,
) -> float:
    """Mean KL(policy || reference) in nats per response over `convs` (see the module doc)."""
    mine = list(convs)
    if accelerator is not None and accelerator.num_processes > 1:
        mine = mine[accelerator.process_index :: accelerator.num_processes] or mine[:1]
    was_training = policy.training
    policy.eval()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    sums: list[torch.Tensor] = []
    try:
        for start in range(0, len(mine), batch_size):
            q, qm, resp, mask, _ = sample_responses(
                policy,
                tokenizer,
                mine[start : start + batch_size],
                max_new_tokens=max_new_tokens,
                max_prompt_tokens=max_prompt_tokens,
                template=template,
            )
            ids, attn = torch.cat([q, resp], 1), torch.cat([qm, mask], 1)
            logp = _response_logprobs(policy, ids, attn, q.shape[1], resp)
            with _reference_context(policy, reference):
                ref = reference if reference is not None else policy
                ref_logp = _response_logprobs(ref, ids, attn, q.shape[1], resp)
            sums.append(((logp - ref_logp) * mask).sum(1))
    finally:
        torch.random.set_rng_state(state)
        policy.train(was_training)
    values = torch.cat(sums).float()
    total = torch.stack([values.sum(), torch.tensor(float(len(values)), device=values.device)])
    if accelerator is not None and accelerator.num_processes > 1:  # shares may differ in size: sum and count
        total = accelerator.reduce(total.to(accelerator.device), reduction="sum")
    value = (total[0] / total[1]).item()
    return value if math.isfinite(value) else float("nan")


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters being trained (all of them, or only the adapter under LoRA)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def restore(model: Any, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


class KLGuard(TrainerCallback):
    """Measures KL every `every` steps (and at the last one); past `bound` restores the last good
    weights and stops. `model()` returns the unwrapped model being trained; `measure()` its KL."""

    def __init__(
        self, model: Callable[[], Any], measure: Callable[[], float], *, bound: float | None, every: int, name: str
    ):
        self.model, self.measure, self.bound, self.every, self.name = model, measure, bound, max(1, every), name
        self.checks: list[dict[str, float]] = []
        self.stopped_early: str | None = None
        self._good: dict[str, torch.Tensor] | None = None
        self._good_step = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.bound is not None:
            self._good = trainable_state(self.model())

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        step = state.global_step
        if step % self.every and step != state.max_steps:
            return control
        kl = self.measure()
        self.checks.append({"step": step, "objective/kl": kl})
        if self.bound is not None and (not math.isfinite(kl) or kl > self.bound):
            if self._good is not None:
                restore(self.model(), self._good)
            self.stopped_early = (
                f"KL {kl:.2f} passed kl_stop {self.bound} at step {step}; kept the policy from "
                f"step {self._good_step}, the last check within the bound"
            )
            logger.warning("%s stopped early: %s", self.name.upper(), self.stopped_early)
            control.should_training_stop = True
        elif self.bound is not None:
            self._good, self._good_step = trainable_state(self.model()), step
        return control
