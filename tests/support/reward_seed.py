"""The seed blog's reward-model recipe, reproduced only to measure prefloop against it (tests and
bench/bench_reward.py); no job uses it.

What it does: every text padded to 550 tokens
(`padding="max_length"`), "<|startoftext|>" + text + "<|endoftext|>", and `DataCollatorReward`
setting `labels = [0]*chosen + [1]*rejected` for a plain `transformers.Trainer`. On a one-label
sequence-classification model transformers treats those labels as regression targets, so it
pushes chosen rewards towards 0 and rejected towards 1: the preference is learnt backwards.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefloop.preferences import PreferencePair
from prefloop.text import reward_text

SEED_MAX_LENGTH = 550


@dataclass
class SeedRecipeConfig:
    max_length: int = SEED_MAX_LENGTH
    learning_rate: float = 1e-5
    num_train_epochs: float = 1.0
    per_device_train_batch_size: int = 8
    seed: int = 0
    device: str = "cpu"


class PairwiseDataset:
    """The blog's dataset: each text padded (and truncated) to max_length."""

    def __init__(self, pairs: Sequence[PreferencePair], tokenizer, max_length: int):
        self.rows = []
        for pair in pairs:
            enc = [
                tokenizer(
                    "<|startoftext|>" + reward_text(pair.prompt, text) + "<|endoftext|>",
                    truncation=True,
                    max_length=max_length,
                    padding="max_length",
                    return_tensors="pt",
                )
                for text in (pair.chosen, pair.rejected)
            ]
            self.rows.append(
                (enc[0]["input_ids"], enc[0]["attention_mask"], enc[1]["input_ids"], enc[1]["attention_mask"])
            )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int):
        return self.rows[idx]


class DataCollatorReward:
    """The blog's collator, verbatim in behaviour: chosen rows, then rejected rows, labels 0 and 1."""

    def __call__(self, data):
        import torch

        return {
            "input_ids": torch.cat([f[0] for f in data] + [f[2] for f in data]),
            "attention_mask": torch.cat([f[1] for f in data] + [f[3] for f in data]),
            "labels": torch.tensor([0] * len(data) + [1] * len(data)),
        }


def train_seed_recipe(
    pairs: Sequence[PreferencePair], base_model: str | Path, out_dir: str | Path, config: SeedRecipeConfig | None = None
) -> tuple[Any, Any, float]:
    """Train as the blog did. Returns (model, tokenizer, train seconds); the model stays in memory."""
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from prefloop.models import load_reward_model, load_tokenizer

    config = config or SeedRecipeConfig()
    set_seed(config.seed)
    tokenizer = load_tokenizer(base_model, padding_side="right")
    model = load_reward_model(
        base_model, device=torch.device("cpu"), dtype=torch.float32, pad_token_id=tokenizer.pad_token_id
    )
    args = TrainingArguments(
        output_dir=str(out_dir),
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        per_device_train_batch_size=config.per_device_train_batch_size,
        save_strategy="no",
        report_to="none",
        use_cpu=config.device == "cpu",
        logging_steps=10,
        disable_tqdm=True,
        seed=config.seed,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=PairwiseDataset(pairs, tokenizer, config.max_length),
        data_collator=DataCollatorReward(),
    )
    started = time.perf_counter()
    trainer.train()
    return trainer.accelerator.unwrap_model(trainer.model), tokenizer, time.perf_counter() - started
