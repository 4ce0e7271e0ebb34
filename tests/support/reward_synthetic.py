"""A synthetic, learnable preference for tests and benchmarks: the chosen answer ends with a
word from one set, the rejected one with a word from another; the rest is random filler whose
length is drawn independently for both answers, so "the longer answer wins" sits near chance and
a model can only succeed by pooling at the right (last real) token under padding."""

from __future__ import annotations

import random

from prefloop.preferences import PreferencePair

FILLER = (
    "the quick brown jumps over lazy what is latest on market current of economy people annotate data "
    "model learns which answer policy generates two answers picks better one explain how language works "
    "predicts next from previous ones weather cats dogs science history music art school"
).split()
# Single tokens in the tiny model's vocabulary (and in GPT-2's), with the same character lengths on
# both sides, so the marker carries no length signal.
PLEASANT = ("yes", "warm", "clear", "help", "right")
UNPLEASANT = ("fox", "pets", "stock", "news", "token")


def synthetic_pairs(
    n: int, *, seed: int = 0, filler: tuple[int, int] = (3, 14), prompts: int | None = None
) -> list[PreferencePair]:
    """`n` pairs over `prompts` distinct prompts (default: one prompt per pair)."""
    rng = random.Random(seed)
    n_prompts = prompts or n
    prompt_texts = [
        f"Question {i}: " + " ".join(rng.choice(FILLER) for _ in range(rng.randint(3, 8))) + "?"
        for i in range(n_prompts)
    ]

    def answer(markers):
        words = [rng.choice(FILLER) for _ in range(rng.randint(*filler))]
        return " ".join(words + [rng.choice(markers)])

    return [
        PreferencePair(
            prompt_texts[i % n_prompts], answer(PLEASANT), answer(UNPLEASANT), task_id=i, annotation_ids=(i,)
        )
        for i in range(n)
    ]
