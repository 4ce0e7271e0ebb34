"""One DPO run: `train_dpo(pairs, policy_source, out_dir, config) -> metrics`.

The pairs are prefloop's PreferencePairs, what reward training reads. Each is tokenized here, by
prefloop.family's rules, not by TRL: the prompt is `generation_ids` (what the policy continued when
it wrote the answer) and prompt + answer is `scoring_ids` plus EOS (when no chat template closes the
turn), so the policy learns on exactly the text generation shows it, for GPT-2's bare prompts and
for chat templates alike; the completion starts where the two id lists diverge. The reference is
the starting policy, frozen (a second copy), or under LoRA the base with the adapter disabled.
The job, the benchmark, the closed-loop test and `python -m worker.dpo` call this; it never
publishes (callers train into `ArtifactStore.staging()`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefloop.errors import JobSkipped
from prefloop.preferences import PreferencePair
from worker.dpo.config import DPOKnobs
from worker.trainers import trl_run

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from transformers import PreTrainedTokenizerBase, ProcessorMixin
    from trl import DPOConfig, DPOTrainer

logger = logging.getLogger(__name__)

CURVES = [
    ("dpo/loss", "DPO loss"),
    ("objective/kl", "KL to the start (nats, sampled)"),
    ("dpo/rewards/accuracies", "implicit reward accuracy"),
    ("dpo/rewards/margins", "implicit reward margin"),
    ("dpo/rewards/chosen", "implicit reward, chosen"),
    ("dpo/rewards/rejected", "implicit reward, rejected"),
    ("dpo/grad_norm", "gradient norm"),
    ("dpo/learning_rate", "learning rate"),
]


def tokenize_pairs(
    tokenizer: Any, pairs: list[PreferencePair], template: str, max_length: int
) -> tuple[dict[str, list[list[int]]], int]:
    """({prompt_ids, chosen_ids, rejected_ids} columns, pairs dropped because the prompt alone fills max_length)."""
    from prefloop import family

    eos = family.eos_ids(tokenizer)[0]
    columns: dict[str, list[list[int]]] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    dropped = 0
    for pair in pairs:
        conv = pair.conv
        prompt = family.generation_ids(tokenizer, conv, template)
        closed = family.uses_native_template(tokenizer, conv, template)
        full = [
            family.scoring_ids(tokenizer, conv, answer, template) + ([] if closed else [eos])
            for answer in (pair.chosen, pair.rejected)
        ]
        n = min(_common_prefix(prompt, full[0]), _common_prefix(prompt, full[1]))
        if n >= max_length:
            dropped += 1
            continue
        columns["prompt_ids"].append(prompt[:n])
        columns["chosen_ids"].append(full[0][n:])
        columns["rejected_ids"].append(full[1][n:])
    return columns, dropped


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def train_dpo(
    pairs: Iterable[PreferencePair | Mapping[str, Any]],
    policy_source: str | Path,
    out_dir: str | Path,
    config: DPOKnobs | Mapping[str, Any] | None = None,
    *,
    reward_source: str | Path | None = None,
    device: str = "auto",
    base_model: str | None = None,
    lora: Any = None,
    template: str = "",
    progress: trl_run.ProgressFn | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the policy at `policy_source` with DPO on `pairs` into `out_dir`; returns the metrics
    (also in metrics.json). `lora`: prefloop.family.LoraSettings (None or r=0: full fine-tuning).
    Raises JobSkipped when there are too few pairs."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import DPOConfig

    from prefloop.family import context_length
    from prefloop.models import load_tokenizer, resolve_device, use_bf16
    from worker.reward.train import as_pairs

    config = config if isinstance(config, DPOKnobs) else DPOKnobs.from_overrides(config)
    pairs = as_pairs(pairs)
    if len(pairs) < config.min_pairs:
        raise JobSkipped(
            f"only {len(pairs)} usable preference pair(s); DPO needs at least {config.min_pairs} (min_pairs)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    set_seed(config.seed)
    tokenizer = load_tokenizer(policy_source, padding_side="right")
    model, peft_config, reference, saved_base = trl_run.load_policy(
        policy_source, base_model or str(policy_source), lora
    )
    max_length = min(config.max_length, context_length(model.config, tokenizer, default=config.max_length))
    columns, dropped = tokenize_pairs(tokenizer, pairs, template, max_length)
    if len(columns["prompt_ids"]) < config.min_pairs:
        raise JobSkipped(
            f"{dropped} of {len(pairs)} pair(s) have prompts of {max_length}+ tokens; "
            f"{len(columns['prompt_ids'])} are left, DPO needs at least {config.min_pairs}"
        )
    args = trl_run.trl_args(
        DPOConfig,
        config,
        out,
        dev,
        use_bf16(dev),
        beta=config.beta,
        loss_type=[config.loss_type],
        label_smoothing=config.label_smoothing,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_length=max_length,
        precompute_ref_log_probs=False,
    )
    trainer = _dpo_class()(
        model=model,
        ref_model=reference,
        args=args,
        processing_class=tokenizer,
        train_dataset=Dataset.from_dict(columns),
        peft_config=peft_config,
    )
    convs = [p.conv for p in pairs]
    resolved = {
        "policy_source": str(policy_source),
        "reward_source": str(reward_source) if reward_source else None,
        "pairs": len(pairs),
        "dropped_long_prompts": dropped,
        "max_length_used": max_length,
        "lora": trl_run.is_lora(trainer),
        "saved_base": saved_base,
        **(extra_config or {}),
    }

    def extra(history: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "pairs": len(columns["prompt_ids"]),
            "prompts": len(set(convs)),
            "beta": config.beta,
            "loss_type": config.loss_type,
            "final_loss": trl_run.last(history, "dpo/loss"),
            "final_reward_accuracy": trl_run.last(history, "dpo/rewards/accuracies"),
            "final_reward_margin": trl_run.last(history, "dpo/rewards/margins"),
        }

    return trl_run.run(
        trainer,
        "dpo",
        config=config,
        out_dir=out,
        shown=trl_run.pick(convs, config.sample_prompts, config.seed),
        kl_prompts=trl_run.pick(convs, config.kl_prompts, config.seed + 1),
        reference=trainer.ref_model,
        reward_source=reward_source,
        base_model=saved_base,
        resolved=resolved,
        template=template,
        curves=CURVES,
        extra=extra,
        progress=progress,
    )


def _dpo_class() -> type[DPOTrainer]:
    from trl import DPOTrainer

    class PreTokenizedDPO(DPOTrainer):
        """DPOTrainer on rows prefloop already tokenized (tokenize_pairs): TRL's own text
        preprocessing would add special tokens by its rules, not prefloop.family's."""

        def _prepare_dataset(
            self,
            dataset: Dataset | IterableDataset,
            processing_class: PreTrainedTokenizerBase | ProcessorMixin,
            args: DPOConfig,
            dataset_name: str,
        ) -> Dataset | IterableDataset:
            return dataset

    return PreTokenizedDPO
