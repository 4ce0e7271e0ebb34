"""The PPO loop on `accelerate`: rollouts, rewards, GAE, several epochs of clipped updates.

One process as is; several GPUs through `accelerate launch` (each process rolls out its own
`rollout_batch_size` episodes; DDP averages the gradients). bf16 autocast on a GPU that supports
it (master weights stay fp32), fp32 on CPU. Dropout stays off throughout (models in eval mode), so
the log-probabilities of a rollout and of the first update agree exactly.

Guardrail: when a rollout's KL to the reference passes `kl_stop`, the run stops and the policy
from before the last update (whose KL was within the bound) is restored. The final policy is
measured by one more rollout, so the KL reported for the published policy is a measured one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from prefloop.family import PADDING_SIDE, Conversation, LoraSettings, eos_ids, pad_id
from prefloop.models import (
    adapter_base,
    fused_gelu,
    is_adapter,
    load_causal_lm,
    load_tokenizer,
    save_model,
    use_bf16,
    with_lora,
)
from worker.ppo import core
from worker.ppo.config import PPOConfig
from worker.ppo.model import PolicyValueModel
from worker.ppo.rollout import Rollout, ScoreFn, collect

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)


@dataclass
class PPORun:
    """What a run produced: per-step metrics, why it stopped, and the final measured KL/score."""

    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: str | None = None
    final: dict[str, float] = field(default_factory=dict)


def make_accelerator(device: str = "auto") -> Accelerator:
    from accelerate import Accelerator

    cpu = device == "cpu" or not torch.cuda.is_available()
    if not cpu and device.startswith("cuda:"):
        torch.cuda.set_device(int(device.split(":", 1)[1]))  # DEVICE=cuda:N in a single process
    bf16 = not cpu and use_bf16(torch.device("cuda"))
    return Accelerator(cpu=cpu, mixed_precision="bf16" if bf16 else "no")


class PPOTrainer:
    """PPO on one policy. With LoRA (`lora.enabled`) the policy trains an adapter (a fresh one on
    `policy_source`, or the adapter of a published LoRA version, continued) and the reference is
    the same model with the adapter disabled; otherwise every weight trains against a second,
    frozen copy. `template` is CHAT_TEMPLATE; prompts are Conversations rendered by the policy's
    tokenizer (prefloop.family)."""

    def __init__(
        self,
        config: PPOConfig,
        policy_source: str,
        score: ScoreFn | None = None,
        *,
        device: str = "auto",
        lora: LoraSettings | None = None,
        template: str = "",
    ) -> None:
        from accelerate.utils import set_seed

        self.config = config
        self.accelerator = make_accelerator(device)
        set_seed(config.seed + self.accelerator.process_index)
        dev = self.accelerator.device
        self.tokenizer = load_tokenizer(policy_source, padding_side=PADDING_SIDE["generate"])
        self.template = template
        self.pad_id = pad_id(self.tokenizer)
        lora = lora or LoraSettings()
        self.adapter_base: str | None  # the base a LoRA adapter loads onto (None: full fine-tuning)
        # Policy and reference in fp32 under the same autocast: at step 0 their KL is exactly 0.
        load = functools.partial(load_causal_lm, device=dev, dtype=torch.float32, pad_token_id=self.pad_id)
        if lora.enabled and is_adapter(policy_source):  # continue the published adapter, on its own base
            policy, self.adapter_base = load(policy_source, trainable_adapter=True), adapter_base(policy_source)
        elif lora.enabled:
            policy, self.adapter_base = (
                with_lora(load(policy_source), lora, "causal_lm", base_model=policy_source),
                policy_source,
            )
        else:
            policy, self.adapter_base = load(policy_source), None
        policy = fused_gelu(policy)
        self.ref_model = None if lora.enabled else fused_gelu(load(policy_source)).requires_grad_(False)
        self.eos_ids = list(eos_ids(self.tokenizer, policy))
        model = PolicyValueModel(policy)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=config.learning_rate,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
            foreach=True,
        )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.model.eval()  # no dropout, ever (N+ details)
        self.score = score
        self.kl_ctl = core.kl_controller(config.init_kl_coef, config.target_kl, config.horizon)
        self.moments = core.RunningMoments()
        self._rng = random.Random(config.seed + self.accelerator.process_index)

    @property
    def policy(self) -> Any:
        return self.accelerator.unwrap_model(self.model).policy

    # --- the loop ----------------------------------------------------------------------------------
    def train(
        self, prompts: Sequence[Conversation | str], on_step: Callable[[int, dict[str, float]], None] | None = None
    ) -> PPORun:
        cfg, run = self.config, PPORun()
        batches = self._prompt_batches(list(prompts))
        snapshot = None
        for step in range(cfg.steps + 1):  # the extra rollout measures the final policy
            started = time.monotonic()
            rollout = self.rollout(next(batches))
            rollout_s = time.monotonic() - started
            kl = self._mean(rollout.logprobs.sub(rollout.ref_logprobs).mul(rollout.mask).sum(1))
            if cfg.kl_stop is not None and kl > cfg.kl_stop:
                if snapshot is not None:
                    self.policy.load_state_dict(snapshot, strict=False)
                run.stopped_early = (
                    f"KL {kl:.2f} passed kl_stop {cfg.kl_stop} at step {step}; kept the policy "
                    f"from before step {max(step - 1, 0)}'s update"
                )
                logger.warning("PPO stopped early: %s", run.stopped_early)
                break
            run.final = {"objective/kl": kl, "objective/scores": self._mean(rollout.scores), "step": step}
            if step == cfg.steps:
                break
            if cfg.kl_stop is not None:
                snapshot = {
                    k: v.detach().to("cpu", copy=True) for k, v in self.policy.named_parameters() if v.requires_grad
                }  # what an update changes (a LoRA adapter: a few MB)
            metrics = self.update(rollout)
            metrics["time/rollout_s"] = rollout_s
            metrics["time/step_s"] = time.monotonic() - started
            metrics["step"] = step
            run.history.append(metrics)
            if on_step is not None:
                on_step(step, metrics)
        return run

    def rollout(self, prompts: Sequence[Conversation | str]) -> Rollout:
        cfg = self.config
        return collect(
            self.accelerator.unwrap_model(self.model),
            self.ref_model,
            self.tokenizer,
            prompts,
            cast(ScoreFn, self.score),  # set before any rollout (train_policy); None fails in collect as before
            max_new_tokens=cfg.max_new_tokens,
            max_prompt_tokens=cfg.max_prompt_tokens,
            forward_batch_size=cfg.forward_batch_size,
            device=self.accelerator.device,
            eos_ids=self.eos_ids,
            pad_token_id=self.pad_id,
            autocast=self.accelerator.autocast,
            template=self.template,
        )

    def update(self, r: Rollout) -> dict[str, float]:
        """Rewards, advantages and `ppo_epochs` passes of clipped updates on one rollout batch."""
        cfg = self.config
        scores = self.shape_scores(r)
        kl_coef = self.kl_ctl.value
        rewards, kl = core.per_token_rewards(scores, r.logprobs, r.ref_logprobs, r.mask, kl_coef)
        advantages, returns = core.gae(rewards, r.values, r.mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = core.masked_whiten(advantages, r.mask)
        stats: dict[str, list[float]] = {}
        ids, attn = r.input_ids, r.attention_mask
        B, Q = ids.shape[0], r.query_ids.shape[1]
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B, device=ids.device)
            for mini in order.split(cfg.mini_batch_size):  # type: ignore[no-untyped-call]  # torch: unannotated
                micros = mini.split(cfg.micro_batch_size)
                for i, idx in enumerate(micros):
                    sync = i == len(micros) - 1
                    ctx = self.accelerator.no_sync(self.model) if not sync else contextlib.nullcontext()
                    with ctx:
                        step_stats = self._micro_step(
                            ids[idx], attn[idx], Q, r, idx, advantages[idx], returns[idx], len(micros)
                        )
                    for k, v in step_stats.items():
                        stats.setdefault(k, []).append(v)
                if cfg.max_grad_norm > 0:
                    norm = self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    stats.setdefault("policy/grad_norm", []).append(float(norm))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        mean_kl = self._mean(kl.sum(1))
        self.kl_ctl.update(mean_kl, B * self.accelerator.num_processes)
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        raw = self._mean(r.scores)
        out.update(
            {
                "objective/kl": mean_kl,
                "objective/kl_coef": kl_coef,
                "objective/scores": raw,
                "objective/rlhf_reward": raw - kl_coef * mean_kl,
                "objective/scores_shaped": self._mean(scores),
                "response/length": self._mean(r.mask.sum(1).float()),
                "response/ended": self._mean(r.ended.float()),
                "episodes": B * self.accelerator.num_processes,
            }
        )
        return out

    def _micro_step(
        self,
        ids: torch.Tensor,
        attn: torch.Tensor,
        Q: int,
        r: Rollout,
        idx: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        accumulation: int,
    ) -> dict[str, float]:
        cfg, mask = self.config, r.mask[idx]
        logits, values = self.model(ids, attn, Q)
        logprobs = core.logprobs_from_logits(logits, r.response_ids[idx])
        pg_loss, clipfrac, approx_kl = core.policy_loss(logprobs, r.logprobs[idx], advantages, mask, cfg.cliprange)
        vf_loss, vf_clipfrac = core.value_loss(values, r.values[idx], returns, mask, cfg.cliprange_value)
        loss = pg_loss + cfg.vf_coef * vf_loss
        entropy = None
        if cfg.entropy_coef:
            entropy = core.masked_mean(core.entropy_from_logits(logits), mask)
            loss = loss - cfg.entropy_coef * entropy
        self.accelerator.backward(loss / accumulation)
        with torch.no_grad():
            if entropy is None:
                entropy = core.masked_mean(core.entropy_from_logits(logits.detach()), mask)
        return {
            "loss/policy": pg_loss.item(),
            "loss/value": vf_loss.item(),
            "policy/clipfrac": clipfrac.item(),
            "policy/approxkl": approx_kl.item(),
            "policy/entropy": float(entropy),
            "value/clipfrac": vf_clipfrac.item(),
        }

    def shape_scores(self, r: Rollout) -> torch.Tensor:
        """Raw reward-model scores -> the scores PPO optimises: EOS penalty, running whitening, clipping."""
        cfg, scores = self.config, r.scores.float()
        if cfg.missing_eos_penalty:
            scores = scores - cfg.missing_eos_penalty * (~r.ended).float()
        if cfg.normalize_reward:
            self.moments.update(self.accelerator.gather(scores))
            scores = self.moments.normalize(scores)
        if cfg.reward_clip:
            scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
        return scores

    # --- helpers -------------------------------------------------------------------------------------
    def _mean(self, x: torch.Tensor) -> float:
        """Mean over every process's episodes."""
        value = self.accelerator.gather(x.detach().float().reshape(-1)).mean().item()
        return value if math.isfinite(value) else float("nan")

    def _prompt_batches(self, prompts: list[Conversation | str]) -> Iterator[list[Conversation | str]]:
        """Endless batches of rollout_batch_size prompts: shuffled passes over the prompts."""
        n = self.config.rollout_batch_size
        pool: list[Conversation | str] = []
        while True:
            while len(pool) < n:
                epoch = prompts[:]
                self._rng.shuffle(epoch)
                pool += epoch
            yield pool[:n]
            pool = pool[n:]

    def save(self, out_dir: str | Path, *, base_model: str | None = None) -> None:
        """The policy plus its tokenizer, as generation loads it: a plain causal LM, or (LoRA) the adapter
        naming its base."""
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        base = self.adapter_base or base_model  # an adapter names the weights it loads onto
        save_model(self.policy, self.tokenizer, out_dir, base_model=base or "")
