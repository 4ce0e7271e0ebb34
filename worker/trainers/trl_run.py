"""One run of a TRL trainer (DPO, GRPO, RLOO) with prefloop's contract around it: samples before,
the KL guardrail during training, the measured final KL, samples after with reward-model scores,
the policy saved as a plain causal LM (what generation loads) and the report beside it.

Under `accelerate launch` every process trains and measures; only the main process writes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.trainers import report
from worker.trainers.guard import KLGuard, measure_kl, sample_texts

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)
ProgressFn = Callable[[int, int, str], None]  # (done, total, stage)


def pick(prompts: Sequence[Any], n: int, seed: int) -> list[Any]:
    """`n` distinct prompts (Conversations), the same ones for the same seed."""
    distinct = sorted(set(prompts))
    return random.Random(seed).sample(distinct, min(n, len(distinct)))


def run(
    trl_trainer: Any,
    name: str,
    *,
    config: Any,
    out_dir: Path,
    shown: Sequence[Any],
    kl_prompts: Sequence[Any],
    reference: Any,
    reward_source: str | Path | None,
    base_model: str,
    resolved: dict[str, Any],
    template: str,
    curves: Sequence[tuple[str, str]],
    extra: Callable[[list[dict[str, Any]]], dict[str, Any]],
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train `trl_trainer` (built, not yet trained) and write the version into `out_dir`; returns metrics."""
    from transformers import TrainerCallback

    accelerator = trl_trainer.accelerator
    tokenizer = trl_trainer.processing_class

    def policy() -> Any:
        return accelerator.unwrap_model(trl_trainer.model)

    def kl() -> float:
        with accelerator.autocast():
            return measure_kl(
                policy(),
                reference,
                tokenizer,
                kl_prompts,
                max_new_tokens=config.max_new_tokens,
                max_prompt_tokens=config.max_prompt_tokens,
                template=template,
                seed=config.seed + 777,
                accelerator=accelerator,
            )

    def responses() -> list[str]:  # the same sampling noise before and after
        with accelerator.autocast():
            return sample_texts(
                policy(),
                tokenizer,
                list(shown),
                max_new_tokens=config.max_new_tokens,
                max_prompt_tokens=config.max_prompt_tokens,
                template=template,
                seed=config.seed + 12345,
            )

    guard = KLGuard(policy, kl, bound=config.kl_stop, every=config.kl_check_steps, name=name)
    trl_trainer.add_callback(guard)
    if progress is not None:
        report_progress: ProgressFn = progress  # narrowed, for the method below

        class _Progress(TrainerCallback):
            def on_step_end(
                self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
            ) -> None:
                report_progress(state.global_step, state.max_steps, "training")

        trl_trainer.add_callback(_Progress())
    before = responses()
    started = time.perf_counter()
    trl_trainer.train()
    runtime_s = time.perf_counter() - started
    final_kl = guard.checks[-1]["objective/kl"] if guard.checks and not guard.stopped_early else kl()
    after = responses()
    before_scores: Sequence[float | None] = [None] * len(shown)
    after_scores: Sequence[float | None] = [None] * len(shown)
    if reward_source is not None:
        from prefloop.scoring import RewardScorer

        scorer = RewardScorer(reward_source, device=str(accelerator.device))
        before_scores, after_scores = score(scorer, shown, before), score(scorer, shown, after)
    history = report.namespaced_history(name, trl_trainer.state.log_history, guard.checks)
    metrics = report.summary(
        name,
        history=history,
        final_kl=final_kl,
        kl_stop=config.kl_stop,
        stopped_early=guard.stopped_early,
        before_scores=before_scores,
        after_scores=after_scores,
        runtime_s=runtime_s,
        steps_done=trl_trainer.state.global_step,
        processes=accelerator.num_processes,
        train_loss=next((e["train_loss"] for e in reversed(trl_trainer.state.log_history) if "train_loss" in e), None),
        **extra(history),
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_policy(policy(), tokenizer, out_dir, base_model)
        report.write_report(
            out_dir,
            name,
            config={**config.to_dict(), **resolved},
            metrics=metrics,
            samples=report.sample_records([c.key for c in shown], before, after, before_scores, after_scores),
            curves=curves,
        )
        _tidy(out_dir / "tracking")
    accelerator.wait_for_everyone()
    logger.info(
        "%s: %d steps in %.1fs, final KL %.3f%s",
        name.upper(),
        metrics["steps_done"],
        runtime_s,
        final_kl,
        f" ({guard.stopped_early})" if guard.stopped_early else "",
    )
    return metrics


def save_policy(model: Any, tokenizer: Any, out_dir: Path, base_model: str) -> None:
    """What generation loads back through prefloop.models: full weights, or under LoRA the adapter
    naming the base it sits on."""
    from prefloop.models import save_model

    save_model(model, tokenizer, out_dir, base_model=base_model)


def score(scorer: Any, convs: Sequence[Any], answers: Sequence[str]) -> list[float]:
    """Reward-model scores of answers to conversations, as /predict and PPO score them
    (prefloop.scoring.RewardScorer: the reward model's own tokenizer and the template it was trained with)."""
    return [float(x) for x in scorer.score(list(convs), list(answers))]


def last(history: Sequence[dict[str, Any]], key: str) -> float | None:
    """The last logged value of `key` in a history."""
    for row in reversed(history):
        if isinstance(row.get(key), (int, float)):
            return float(row[key])
    return None


def _tidy(path: Path) -> None:
    import shutil

    if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
        shutil.rmtree(path, ignore_errors=True)


def trl_args(cls: Any, config: Any, out_dir: Path, device: Any, bf16: bool, **fields: Any) -> Any:
    """TRL's config with what every prefloop run sets the same way (no checkpoints, no tracker,
    CPU flag, precision, seeds, quiet)."""
    return cls(
        output_dir=str(Path(out_dir) / "tracking"),
        save_strategy="no",
        report_to="none",
        use_cpu=device.type == "cpu",
        bf16=bf16,
        seed=config.seed,
        data_seed=config.seed,
        disable_tqdm=True,
        dataloader_pin_memory=device.type == "cuda",
        activation_checkpointing=False,
        learning_rate=config.learning_rate,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        run_name=Path(out_dir).name,
        **fields,
    )


def load_policy(
    policy_source: str | Path, base_model: str, lora: Any, *, reference: bool = True
) -> tuple[Any, Any, Any, str]:
    """(model, peft_config for TRL, frozen reference or None, the base the saved version names).

    - a published LoRA version: its adapter, trainable, on its base (TRL gets the PeftModel; the
      reference is that base, adapter disabled);
    - LoRA on (LORA_R > 0): a fresh adapter on the starting policy (TRL wraps it);
    - otherwise full fine-tuning against a frozen copy of the starting policy."""
    import torch

    from prefloop import family
    from prefloop.family import lora_config
    from prefloop.models import adapter_base, is_adapter, load_causal_lm, load_tokenizer

    cpu = torch.device("cpu")
    pad = family.pad_id(load_tokenizer(policy_source))
    if is_adapter(policy_source):
        model = load_causal_lm(policy_source, device=cpu, dtype=torch.float32, pad_token_id=pad, trainable_adapter=True)
        return model, None, None, adapter_base(policy_source)
    model = load_causal_lm(policy_source, device=cpu, dtype=torch.float32, pad_token_id=pad)
    peft_config = lora_config(model.config.model_type, lora, "causal_lm") if lora is not None else None
    if peft_config is not None:
        peft_config.base_model_name_or_path = str(policy_source)
        return model, peft_config, None, str(policy_source)
    if not reference:  # the TRL trainer builds its own
        return model, None, None, base_model
    frozen = load_causal_lm(policy_source, device=cpu, dtype=torch.float32, pad_token_id=pad).requires_grad_(False)
    return model, None, frozen, base_model


def is_lora(trl_trainer: Any) -> bool:
    from prefloop.models import is_peft

    return bool(is_peft(trl_trainer.accelerator.unwrap_model(trl_trainer.model)))
