"""Few pairs, offline: issue 13's measured failure and what the reward-training defaults do about it.

What the issue measured through a real Label Studio: 300 prompt-only tasks answered by the tiny
offline model, 136 pairwise choices by a scripted annotator with a hidden preference, default
settings -> 14 optimizer steps at learning rate 1e-5, train loss 0.706, eval accuracy 0.37 on 27
pairs, 55% agreement with the hidden preference on the unlabeled tasks.

Here, without Label Studio (the same conversion and training code the job runs): the tiny GPT-2
`prefloop up` builds offline answers 300 prompts twice (pure sampling, MAX_NEW_TOKENS=24 as
`prefloop up` sets for it); a scripted annotator labels the first 136 tasks by a hidden
preference (ties skipped), one of

  readable:   the answer with fewer garbled (non-ASCII) characters: what a person does with the
              tiny model's byte-level gibberish; a bag-of-tokens property
  ends_word:  the answer that ends in a letter (not punctuation or a byte fragment): one token
  wordier:    the answer with more words: a count over the whole answer, the PPO test's preference

and a reward model is trained with

  before: the old defaults (learning_rate 1e-5, one epoch, linear schedule, no early stopping)
  after:  today's defaults (learning rate from the model's size, epochs until the validation loss
          stops improving, best weights kept)

and each is asked about the tasks nobody labelled. Several seeds (split, head, data order).

    .venv/bin/python bench/bench_few_pairs.py [--tasks 300] [--labels 136] [--seeds 3]

Writes bench/results/bench_few_pairs.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "bench_few_pairs.json"
WORDS = (
    "cats dogs music art science history weather market news economy technology data model answer "
    "sea city river school language food travel sport"
).split()
BEFORE = {"learning_rate": 1e-5, "num_train_epochs": 1, "lr_scheduler_type": "linear", "eval_points": 0}


def prompts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    forms = ("Please explain {a} and {b}.", "What is the latest on {a} and {b}?", "Write about {a}, then {b}.")
    out = sorted({f.format(a=a, b=b) for f in forms for a in WORDS for b in WORDS if a != b})
    rng.shuffle(out)
    return out[:n]


def _prefer(value):
    def pick(a: str, b: str) -> int | None:
        """0 if the first answer is preferred, 1 if the second, None on a tie."""
        x, y = value(a), value(b)
        return None if x == y else (0 if x > y else 1)

    return pick


PREFERENCES = {
    "readable": _prefer(lambda t: -sum(not ch.isascii() for ch in t)),
    "ends_word": _prefer(lambda t: t.strip()[-1:].isalpha()),
    "wordier": _prefer(lambda t: len(t.split())),
}


def answers(model_dir: Path, texts: list[str], seed: int) -> list[str]:
    import torch

    from prefloop.models import load_causal_lm, load_tokenizer
    from worker.ppo.rollout import sample_texts

    cpu = torch.device("cpu")
    torch.manual_seed(seed)
    return sample_texts(
        load_causal_lm(model_dir, device=cpu),
        load_tokenizer(model_dir),
        texts,
        max_new_tokens=24,
        max_prompt_tokens=64,
        batch_size=64,
        device=cpu,
    )


def run_one(name: str, knobs: dict, pairs, unlabeled, base: Path, work: Path, seed: int) -> dict:
    from prefloop.scoring import RewardScorer
    from worker.reward import train_reward

    out = work / f"{name}-{seed}"
    started = time.perf_counter()
    metrics = train_reward(pairs, base, out, {**knobs, "seed": seed, "device": "cpu"})
    seconds = time.perf_counter() - started
    scorer = RewardScorer(out, device="cpu")
    left = scorer.score([u[0] for u in unlabeled], [u[1] for u in unlabeled])
    right = scorer.score([u[0] for u in unlabeled], [u[2] for u in unlabeled])
    agree = sum((0 if lft > rgt else 1) == u[3] for lft, rgt, u in zip(left, right, unlabeled)) / len(unlabeled)
    config = json.loads((out / "train_config.json").read_text())
    row = {
        "setting": name,
        "seed": seed,
        "agreement_unlabeled": round(agree, 4),
        "unlabeled": len(unlabeled),
        "learning_rate": config["resolved"].get("learning_rate", config["config"]["learning_rate"]),
        "steps": config["resolved"]["steps"],
        "wall_s": round(seconds, 1),
    }
    for key in (
        "eval/accuracy",
        "eval/accuracy_ci_low",
        "eval/accuracy_ci_high",
        "eval/pairs",
        "train/loss_final",
        "train/epochs",
        "train/best_epoch",
        "validation/pairs",
    ):
        if key in metrics:
            row[key] = metrics[key]
    return row


def main() -> int:
    import torch

    from cli.tinymodel import build_tiny_gpt2
    from prefloop.preferences import PreferencePair

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--labels", type=int, default=136)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--preferences", default=",".join(PREFERENCES), help=f"comma-separated, of {', '.join(PREFERENCES)}"
    )
    args = ap.parse_args()
    chosen_prefs = [p for p in args.preferences.split(",") if p]
    unknown = [p for p in chosen_prefs if p not in PREFERENCES]
    if unknown:
        raise SystemExit(
            f"bench_few_pairs: unknown preference(s) {', '.join(unknown)}; known: {', '.join(PREFERENCES)}"
        )
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = build_tiny_gpt2(work / "tiny-gpt2")  # what `prefloop up` builds offline
        texts = prompts(args.tasks)
        first, second = answers(base, texts, seed=1), answers(base, texts, seed=2)
        rows, sizes = [], {}
        for preference in chosen_prefs:
            labelled, unlabeled = [], []
            for i, (p, a, b) in enumerate(zip(texts, first, second)):
                pick = PREFERENCES[preference](a, b)
                if pick is None:
                    continue
                if len(labelled) < args.labels:
                    chosen, rejected = (a, b) if pick == 0 else (b, a)
                    labelled.append(PreferencePair(p, chosen, rejected, task_id=i, annotation_ids=(i,)))
                else:
                    unlabeled.append((p, a, b, pick))
            sizes[preference] = {"labelled": len(labelled), "unlabeled": len(unlabeled)}
            for seed in range(args.seeds):
                for name, knobs in (("before", BEFORE), ("after", {})):
                    row = run_one(name, knobs, labelled, unlabeled, base, work, seed)
                    rows.append({"preference": preference, **row})
                    print(json.dumps(rows[-1]), flush=True)
    summary: dict = {}
    for preference in chosen_prefs:
        for name in ("before", "after"):
            mine = [r for r in rows if r["setting"] == name and r["preference"] == preference]
            s = {
                key: round(statistics.fmean(r[key] for r in mine), 4)
                for key in ("agreement_unlabeled", "eval/accuracy", "steps", "wall_s")
                if key in mine[0]
            }
            s["learning_rate"] = mine[0]["learning_rate"]
            summary[f"{preference}/{name}"] = s
    print(f"\n{args.tasks} tasks, up to {args.labels} labelled pairs each, {args.seeds} seeds (means)")
    print(
        f"{'preference':<11} {'setting':<7} {'labelled':>8} {'unlabeled':>9} {'lr':>8} {'steps':>6} {'eval acc':>9} "
        f"{'agree unlabeled':>16} {'wall s':>7}"
    )
    for key, s in summary.items():
        preference, name = key.split("/")
        n = sizes[preference]
        print(
            f"{preference:<11} {name:<7} {n['labelled']:>8} {n['unlabeled']:>9} {s['learning_rate']:>8.2g} "
            f"{s['steps']:>6.0f} "
            f"{s['eval/accuracy']:>9.3f} {s['agreement_unlabeled']:>16.3f} {s['wall_s']:>7.1f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "args": vars(args),
                "sizes": sizes,
                "python": platform.python_version(),
                "torch": torch.__version__,
                "summary": summary,
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
