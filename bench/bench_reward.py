"""Reward-model benchmark, side by side in one run:

1. Training: prefloop (TRL RewardTrainer, dynamic padding, Bradley-Terry) against the seed blog's
   recipe (every text padded to 550 tokens, labels [0]*chosen + [1]*rejected through a plain
   Trainer) on the same synthetic pairs, the same model and the same hyperparameters. Each side runs
   in its own process; reported: pairs/s of the training loop, peak memory (CPU: peak RSS of the
   process and its rise during training; GPU: torch.cuda.max_memory_allocated) and held-out
   pairwise accuracy. Target: prefloop at least 3x the seed recipe's throughput.
2. /predict: 500 tasks (prompt ~15 tokens, answers ~50 tokens each, as generation writes them)
   through a real `prefloop serve` with a GPT-2-small-sized reward model (GPT2Config() defaults,
   random weights, published locally and loaded through the same code as production), scored
   live, and again with the picks a training job stores with its version (predictions.json).
   Label Studio's limit is 100 s.

    .venv/bin/python bench/bench_reward.py [--pairs 128] [--model mini|tiny|small] [--tasks 500]

Writes bench/results/bench_reward.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
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

        config = dict(learning_rate=spec["lr"], num_train_epochs=1, per_device_train_batch_size=spec["batch"],
                      device=spec["device"], eval_points=0, seed=spec["seed"], eval_fraction=0.2)
        metrics = train_reward(pairs, spec["base"], spec["out"], config)
        seconds, accuracy = metrics["train/runtime_s"], metrics["eval/accuracy"]
        mem_note = "train_reward (load, tokenize, train, evaluate, save)"
    else:
        from tests.support.reward_seed import SeedRecipeConfig, train_seed_recipe

        config = SeedRecipeConfig(learning_rate=spec["lr"], num_train_epochs=1, per_device_train_batch_size=spec["batch"],
                                  seed=spec["seed"], device=spec["device"])
        model, tokenizer, seconds = train_seed_recipe(train, spec["base"], spec["out"], config)
        ids = tokenize(tokenizer, [reward_text(p.prompt, p.chosen) for p in held_out]
                       + [reward_text(p.prompt, p.rejected) for p in held_out])
        rewards = rewards_from_ids(model, ids, pad_token_id=tokenizer.pad_token_id, device=next(model.parameters()).device)
        accuracy = pairwise_accuracy(rewards[:len(held_out)], rewards[len(held_out):])
        mem_note = "seed recipe (load, pad to 550, train)"
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    out = {"side": spec["side"], "train_pairs": len(train), "eval_pairs": len(held_out), "train_seconds": round(seconds, 2),
           "pairs_per_s": round(len(train) / seconds, 2), "eval_accuracy": round(accuracy, 4),
           "peak_rss_mb": round(peak_rss / 2**20, 1), "rss_rise_mb": round((peak_rss - rss_before) / 2**20, 1),
           "memory_scope": mem_note}
    if cuda:
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def training_bench(args, tmp: Path) -> dict:
    base = build_base(args.model, tmp / f"base-{args.model}")
    sides = {}
    for side in ("prefloop", "seed"):
        spec = {"side": side, "pairs": args.pairs, "seed": args.seed, "lr": args.lr, "batch": args.batch,
                "device": args.device, "base": str(base), "out": str(tmp / f"out-{side}"), "threads": args.threads}
        proc = subprocess.run([sys.executable, __file__, "--side-spec", json.dumps(spec)], capture_output=True, text=True,
                              cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false"))
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{\"side\"")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{side} side failed:\n{proc.stderr[-3000:]}")
        sides[side] = json.loads(lines[-1])
        print(f"  {side:<8} {sides[side]['pairs_per_s']:>8.2f} pairs/s  peak RSS {sides[side]['peak_rss_mb']:>7.1f} MB "
              f"(+{sides[side]['rss_rise_mb']} MB)  eval accuracy {sides[side]['eval_accuracy']:.3f}", flush=True)
    ratio = sides["prefloop"]["pairs_per_s"] / sides["seed"]["pairs_per_s"]
    print(f"  throughput ratio prefloop/seed: {ratio:.1f}x (target >= 3x)")
    return {"model": args.model, "model_shape": MODELS[args.model], "pairs": args.pairs, "lr": args.lr, "batch": args.batch,
            "epochs": 1, "sides": sides, "throughput_ratio": round(ratio, 2)}


# --- /predict on 500 tasks through a real server ------------------------------------------------------
def words_to_tokens(tokenizer, rng: random.Random, n_tokens: int) -> str:
    from tests.support.reward_synthetic import FILLER

    words: list[str] = []
    while len(tokenizer(" ".join(words))["input_ids"]) < n_tokens:
        words.append(rng.choice(FILLER))
    return " ".join(words)


def predict_bench(args, tmp: Path) -> dict:
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    from prefloop.artifacts import ArtifactStore
    from tests.support.services import RedisServer

    tok_dir = build_base("tiny", tmp / "tokenizer-source")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    store = ArtifactStore(tmp / "models")
    with store.staging(1, "reward") as staged:
        model = GPT2ForSequenceClassification(GPT2Config(num_labels=1, pad_token_id=tokenizer.pad_token_id))  # GPT-2 small shape
        model.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        params = sum(p.numel() for p in model.parameters())
        del model
        version = store.publish(1, "reward", staged)
    rng = random.Random(0)
    tasks = [{"id": i, "data": {"prompt": words_to_tokens(tokenizer, rng, 15), "answer1": words_to_tokens(tokenizer, rng, 50),
                                "answer2": words_to_tokens(tokenizer, rng, 50)}} for i in range(args.tasks)]
    redis_server = RedisServer().start()
    out = {"model": "GPT2Config() defaults (12 layers, 768 wide, random weights)", "parameters": params, "version": version,
           "tasks": args.tasks, "tokens_per_text": 65, "runs": []}
    try:
        for batch in args.predict_batch:
            run, results = timed_predict(args, tmp, store, redis_server, tasks, batch, "live")
            out["runs"].append(run)
        # What the training job stores with a version: every task's pick, looked up instead of scored.
        from prefloop.scoring import PREDICTIONS_FILE, prediction_key

        picks = {prediction_key(t["data"]["prompt"], t["data"]["answer1"], t["data"]["answer2"]):
                 [e["result"][0]["value"]["selected"], e["score"]] for t, e in zip(tasks, results) if "result" in e}
        with store.staging(1, "reward") as staged:
            source = store.version_dir(1, "reward", version)
            for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
                (staged / name).write_bytes((source / name).read_bytes())
            (staged / PREDICTIONS_FILE).write_text(json.dumps({"count": len(picks), "predictions": picks}))
            store.publish(1, "reward", staged)
        run, _ = timed_predict(args, tmp, store, redis_server, tasks, args.predict_batch[0], "precomputed by the training job")
        out["runs"].append(run)
    finally:
        redis_server.stop()
    return out


def timed_predict(args, tmp: Path, store, redis_server, tasks: list, batch: int, mode: str) -> tuple[dict, list]:
    import requests

    from prefloop.label_config import load_label_config
    from tests.support.services import free_port, prefloop_env, start_server

    port = free_port()
    env = prefloop_env(redis_url=redis_server.url, model_dir=store.root, device=args.device, workers=1, threads=4,
                       predict_batch_size=batch, predict_time_budget=100000, log_level="WARNING",
                       omp_num_threads=args.threads)
    server = start_server(env, port, tmp / f"serve-{batch}-{len(mode)}.log", timeout=60)
    try:
        body = {"project": "1.1700000000", "label_config": load_label_config("pairwise"), "params": {}}
        started = time.perf_counter()
        requests.post(f"http://127.0.0.1:{port}/predict", json=dict(body, tasks=tasks[:1]), timeout=600).raise_for_status()
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        r = requests.post(f"http://127.0.0.1:{port}/predict", json=dict(body, tasks=tasks), timeout=600)
        seconds = time.perf_counter() - started
        r.raise_for_status()
        results = r.json()["results"]
    finally:
        server.stop()
    scored = sum("result" in e for e in results)
    run = {"mode": mode, "predict_batch_size": batch, "first_request_s_incl_model_load": round(load_s, 2),
           "seconds": round(seconds, 2), "tasks_per_s": round(len(tasks) / seconds, 2), "scored": scored,
           "within_100s": seconds < 100}
    print(f"  /predict {len(tasks)} tasks ({mode}, PREDICT_BATCH_SIZE={batch}): {seconds:.2f}s, "
          f"{run['tasks_per_s']} tasks/s, "
          f"{scored} scored; first request incl. model load {load_s:.1f}s", flush=True)
    return run, results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=128, help="synthetic preference pairs (80%% train, 20%% eval by prompt)")
    ap.add_argument("--model", choices=sorted(MODELS), default="mini", help="GPT-2 shape for the training comparison")
    ap.add_argument("--lr", type=float, default=2e-3, help="learning rate for both sides (randomly initialised models)")
    ap.add_argument("--batch", type=int, default=8, help="pairs per step for both sides")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", type=int, default=500)
    ap.add_argument("--predict-batch", type=int, nargs="+", default=[16], help="PREDICT_BATCH_SIZE values to time (live scoring)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for every side (on a 2-core machine shared with other work, 2 OpenMP threads "
                         "get preempted and run several times slower than 1)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-predict", action="store_true")
    ap.add_argument("--side-spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side_spec:
        print(json.dumps(run_side(json.loads(args.side_spec))))
        return 0

    import torch

    tmp = Path(tempfile.mkdtemp(prefix="bench-reward-"))
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "torch": torch.__version__, "device": args.device, "torch_threads": args.threads,
                          "cuda": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
                          "load_avg_at_start": os.getloadavg()}}
    if not args.skip_train:
        print(f"training: {args.pairs} synthetic pairs, GPT-2 '{args.model}' {MODELS[args.model]}, lr {args.lr}, "
              f"batch {args.batch}, 1 epoch, {args.device}", flush=True)
        report["training"] = training_bench(args, tmp)
    if not args.skip_predict:
        print(f"/predict: {args.tasks} tasks, GPT-2-small-sized reward model, {args.device}", flush=True)
        report["predict"] = predict_bench(args, tmp)
    report["machine"]["load_avg_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
