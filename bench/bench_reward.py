"""Reward-model benchmark, side by side in one run:

1. Training: prefloop (TRL RewardTrainer, dynamic padding, Bradley-Terry) against the seed blog's
   recipe (every text padded to 550 tokens, labels [0]*chosen + [1]*rejected through a plain
   Trainer) on the same synthetic pairs, the same model and the same hyperparameters. Each side runs
   in its own process; reported: pairs/s of the training loop, peak memory (CPU: peak RSS of the
   process and its rise during training; GPU: torch.cuda.max_memory_allocated) and held-out
   pairwise accuracy. Target: prefloop at least 3x the seed recipe's throughput.
(/predict no longer scores: the worker pushes predictions; bench/bench_predictions.py measures
import -> every task predicted, and /predict over 500 tasks afterwards.)

    .venv/bin/python bench/bench_reward.py [--pairs 128] [--model mini|tiny|small]

Writes bench/results/bench_reward.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "bench_reward.json"
MODELS = {  # GPT-2 shapes; all use the tiny byte-level BPE built offline
    "tiny": dict(n_layer=2, n_embd=64, n_head=2),
    "mini": dict(n_layer=4, n_embd=256, n_head=4),
    "small": dict(n_layer=12, n_embd=768, n_head=12),
}


def build_base(kind: str, out: Path) -> Path:
    from cli.tinymodel import build_tiny_gpt2

    return build_tiny_gpt2(out, n_positions=1024, **MODELS[kind])


# --- one training side, in a child process ----------------------------------------------------------
def run_side(spec: dict) -> dict:
    import psutil
    import torch

    from prefloop.scoring import rewards_from_ids, tokenize
    from prefloop.text import reward_text
    from tests.support.reward_synthetic import synthetic_pairs
    from worker.reward import split_by_prompt
    from worker.reward.report import pairwise_accuracy

    torch.set_num_threads(spec["threads"])
    pairs = synthetic_pairs(spec["pairs"], seed=spec["seed"])
    train, held_out = split_by_prompt(pairs, 0.2, spec["seed"])
    cuda = spec["device"].startswith("cuda")
    rss_before = psutil.Process().memory_info().rss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if spec["side"] == "prefloop":
        from worker.reward import train_reward

        config = dict(
            learning_rate=spec["lr"],
            num_train_epochs=1,
            per_device_train_batch_size=spec["batch"],
            device=spec["device"],
            eval_points=0,
            seed=spec["seed"],
            eval_fraction=0.2,
        )
        metrics = train_reward(pairs, spec["base"], spec["out"], config)
        seconds, accuracy = metrics["train/runtime_s"], metrics["eval/accuracy"]
        mem_note = "train_reward (load, tokenize, train, evaluate, save)"
    else:
        from tests.support.reward_seed import SeedRecipeConfig, train_seed_recipe

        config = SeedRecipeConfig(
            learning_rate=spec["lr"],
            num_train_epochs=1,
            per_device_train_batch_size=spec["batch"],
            seed=spec["seed"],
            device=spec["device"],
        )
        model, tokenizer, seconds = train_seed_recipe(train, spec["base"], spec["out"], config)
        ids = tokenize(
            tokenizer,
            [reward_text(p.prompt, p.chosen) for p in held_out] + [reward_text(p.prompt, p.rejected) for p in held_out],
        )
        rewards = rewards_from_ids(
            model, ids, pad_token_id=tokenizer.pad_token_id, device=next(model.parameters()).device
        )
        accuracy = pairwise_accuracy(rewards[: len(held_out)], rewards[len(held_out) :])
        mem_note = "seed recipe (load, pad to 550, train)"
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    out = {
        "side": spec["side"],
        "train_pairs": len(train),
        "eval_pairs": len(held_out),
        "train_seconds": round(seconds, 2),
        "pairs_per_s": round(len(train) / seconds, 2),
        "eval_accuracy": round(accuracy, 4),
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "rss_rise_mb": round((peak_rss - rss_before) / 2**20, 1),
        "memory_scope": mem_note,
    }
    if cuda:
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def training_bench(args, tmp: Path) -> dict:
    base = build_base(args.model, tmp / f"base-{args.model}")
    sides = {}
    for side in ("prefloop", "seed"):
        spec = {
            "side": side,
            "pairs": args.pairs,
            "seed": args.seed,
            "lr": args.lr,
            "batch": args.batch,
            "device": args.device,
            "base": str(base),
            "out": str(tmp / f"out-{side}"),
            "threads": args.threads,
        }
        proc = subprocess.run(
            [sys.executable, __file__, "--side-spec", json.dumps(spec)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false"),
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith('{"side"')]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{side} side failed:\n{proc.stderr[-3000:]}")
        sides[side] = json.loads(lines[-1])
        print(
            f"  {side:<8} {sides[side]['pairs_per_s']:>8.2f} pairs/s  peak RSS {sides[side]['peak_rss_mb']:>7.1f} MB "
            f"(+{sides[side]['rss_rise_mb']} MB)  eval accuracy {sides[side]['eval_accuracy']:.3f}",
            flush=True,
        )
    ratio = sides["prefloop"]["pairs_per_s"] / sides["seed"]["pairs_per_s"]
    print(f"  throughput ratio prefloop/seed: {ratio:.1f}x (target >= 3x)")
    return {
        "model": args.model,
        "model_shape": MODELS[args.model],
        "pairs": args.pairs,
        "lr": args.lr,
        "batch": args.batch,
        "epochs": 1,
        "sides": sides,
        "throughput_ratio": round(ratio, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--pairs", type=int, default=128, help="synthetic preference pairs (80%% train, 20%% eval by prompt)"
    )
    ap.add_argument("--model", choices=sorted(MODELS), default="mini", help="GPT-2 shape for the training comparison")
    ap.add_argument("--lr", type=float, default=2e-3, help="learning rate for both sides (randomly initialised models)")
    ap.add_argument("--batch", type=int, default=8, help="pairs per step for both sides")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for every side (on a 2-core machine shared with other work, 2 OpenMP threads "
        "get preempted and run several times slower than 1)",
    )
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--side-spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side_spec:
        print(json.dumps(run_side(json.loads(args.side_spec))))
        return 0

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "device": args.device,
            "torch_threads": args.threads,
            "cuda": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
            "load_avg_at_start": os.getloadavg(),
        }
    }
    if not args.skip_train:
        print(
            f"training: {args.pairs} synthetic pairs, GPT-2 '{args.model}' {MODELS[args.model]}, lr {args.lr}, "
            f"batch {args.batch}, 1 epoch, {args.device}",
            flush=True,
        )
        report["training"] = training_bench(args, tmp)
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
