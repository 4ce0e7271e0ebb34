"""The four policy trainers side by side in one run: PPO, DPO, GRPO and RLOO on the same tiny model,
prompts, reward model and preference pairs.

    .venv/bin/python bench/bench_policy.py                 # tiny GPT-2 (2 layers, 64 wide), CPU
    .venv/bin/python bench/bench_policy.py --gpt2-size     # GPT2Config() defaults (124M), for a GPU

Setup (once, in this process): the base policy answers each training prompt twice; a scripted
annotator with a fixed preference (the wordier answer wins, ties skipped) turns the answers into
preference pairs; prefloop's reward training learns a reward model from those pairs. Then each
trainer runs in a fresh process (so peak memory is its own: max RSS on CPU, torch's max allocated
on a GPU) from the base policy: PPO, GRPO and RLOO against the reward model, DPO on the pairs.

Per trainer: wall time of the run (load, train, report), peak memory, win rate of the trained
policy against the base on held-out prompts under the annotator's preference (with its 95% Wilson
interval and the number of comparisons), final KL to the base (nats per response, measured on the
published policy), the reward model's mean score on the held-out answers before and after, and
that gain per second of wall time.

Writes bench/results/bench_policy.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
WORDS = "cats dogs music art science history weather market news economy technology data model answer".split()
PROMPTS = [f"Please explain {a} and {b}." for a in WORDS for b in WORDS if a != b]
random.Random(0).shuffle(PROMPTS)
TRAIN, HELD_OUT = PROMPTS[:96], PROMPTS[96:160]
NEW_TOKENS, PROMPT_TOKENS = 16, 64
KNOBS = {  # a tiny random GPT-2 needs far larger steps than GPT-2; the closed-loop tests use the same
    "ppo": {
        "steps": 20,
        "rollout_batch_size": 64,
        "mini_batch_size": 16,
        "micro_batch_size": 16,
        "learning_rate": 1e-3,
        "max_prompt_tokens": PROMPT_TOKENS,
        "max_new_tokens": NEW_TOKENS,
        "kl_stop": 20.0,
    },
    "dpo": {
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 16,
        "num_train_epochs": 2,
        "max_prompt_tokens": PROMPT_TOKENS,
        "max_new_tokens": NEW_TOKENS,
        "kl_stop": 20.0,
    },
    "grpo": {
        "learning_rate": 3e-3,
        "steps": 16,
        "prompts_per_step": 8,
        "num_generations": 8,
        "max_prompt_tokens": PROMPT_TOKENS,
        "max_new_tokens": NEW_TOKENS,
        "kl_stop": 20.0,
    },
    "rloo": {
        "learning_rate": 3e-3,
        "steps": 16,
        "prompts_per_step": 8,
        "num_generations": 8,
        "max_prompt_tokens": PROMPT_TOKENS,
        "max_new_tokens": NEW_TOKENS,
        "kl_stop": 20.0,
    },
}
GPT2_LR = {"ppo": 1e-5, "dpo": 1e-6, "grpo": 1e-6, "rloo": 1e-6}


def words(text: str) -> int:
    return len(text.split())


def wilson(wins: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = wins / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return ((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n))


def sample(model_dir: Path, prompts: list[str], seed: int) -> list[str]:
    from prefloop.models import load_causal_lm, load_tokenizer, resolve_device
    from worker.trainers.guard import sample_texts

    lm = load_causal_lm(model_dir, device=resolve_device("auto"))
    return sample_texts(
        lm,
        load_tokenizer(model_dir),
        prompts,
        max_new_tokens=NEW_TOKENS,
        max_prompt_tokens=PROMPT_TOKENS,
        seed=seed,
        batch_size=64,
    )


def setup(work: Path, gpt2_size: bool) -> dict:
    from cli.tinymodel import build_tiny_gpt2
    from worker.reward import train_reward

    base = work / "base"
    if gpt2_size:
        build_tiny_gpt2(base, n_layer=12, n_embd=768, n_head=12, n_positions=1024)
    else:
        build_tiny_gpt2(base)
    rng = random.Random(1)
    asked = [rng.choice(TRAIN) for _ in range(1000)]
    left, right = sample(base, asked, 1), sample(base, asked, 2)
    pairs = []
    for prompt, a, b in zip(asked, left, right, strict=True):
        if words(a) != words(b):
            chosen, rejected = (a, b) if words(a) > words(b) else (b, a)
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    started = time.perf_counter()
    rm = train_reward(
        pairs,
        str(base),
        work / "rm",
        {
            "learning_rate": 2e-5 if gpt2_size else 2e-3,
            "num_train_epochs": 2,
            "per_device_train_batch_size": 16,
            "eval_points": 0,
            "warmup_ratio": 0.0,
        },
    )
    (work / "pairs.json").write_text(json.dumps(pairs))
    return {
        "pairs": len(pairs),
        "reward_eval_accuracy": rm["eval/accuracy"],
        "reward_eval_pairs": rm.get("eval/pairs"),
        "reward_train_s": round(time.perf_counter() - started, 1),
    }


def run_one(trainer: str, work: Path, gpt2_size: bool) -> dict:
    """In a fresh process: train from the base, evaluate, report."""
    import torch

    from prefloop.scoring import RewardScorer

    knobs = dict(KNOBS[trainer], **({"learning_rate": GPT2_LR[trainer]} if gpt2_size else {}))
    base, rm, out = work / "base", work / "rm", work / trainer
    started = time.perf_counter()
    if trainer == "ppo":
        from worker.ppo.config import PPOConfig
        from worker.ppo.run import train_policy

        metrics = train_policy(
            TRAIN,
            policy_source=base,
            reward_source=rm,
            out_dir=out,
            config=PPOConfig.from_overrides(knobs),
            base_model=str(base),
        )
    elif trainer == "dpo":
        from worker.dpo.train import train_dpo

        metrics = train_dpo(
            json.loads((work / "pairs.json").read_text()), base, out, knobs, reward_source=rm, base_model=str(base)
        )
    else:
        from worker.online.train import train_online

        metrics = train_online(
            trainer, TRAIN, policy_source=base, reward_source=rm, out_dir=out, config=knobs, base_model=str(base)
        )
    wall = time.perf_counter() - started
    peak = (
        torch.cuda.max_memory_allocated()
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    prompts = HELD_OUT * 4
    before, after = sample(base, prompts, 7), sample(out, prompts, 7)
    wins = sum(
        1.0 if words(t) > words(b) else 0.5 if words(t) == words(b) else 0.0 for t, b in zip(after, before, strict=True)
    )
    scorer = RewardScorer(rm)
    gain = (sum(scorer.score(prompts, after)) - sum(scorer.score(prompts, before))) / len(prompts)
    low, high = wilson(wins, len(prompts))
    return {
        "trainer": trainer,
        "wall_s": round(wall, 1),
        "peak_mem_mb": round(peak / 2**20),
        "win_rate": round(wins / len(prompts), 3),
        "win_rate_ci95": [round(low, 3), round(high, 3)],
        "comparisons": len(prompts),
        "final_kl": metrics.get("final_kl"),
        "kl_stop": metrics.get("kl_stop"),
        "stopped_early": metrics.get("stopped_early"),
        "reward_gain": round(gain, 4),
        "reward_gain_per_s": round(gain / wall, 5),
        "steps": metrics.get("steps_done"),
        "knobs": knobs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpt2-size", action="store_true", help="GPT2Config() defaults (124M) instead of the tiny model")
    ap.add_argument("--trainers", default="ppo,dpo,grpo,rloo")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help="working directory (default: a new temporary one)")
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.work, args.gpt2_size)), flush=True)
        return 0
    import torch

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-policy-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f">> setup in {work}: base policy answers, scripted annotator, reward model", flush=True)
    info = setup(work, args.gpt2_size)
    print(f">> {info['pairs']} pairs, reward model eval accuracy {info['reward_eval_accuracy']:.3f}", flush=True)
    rows = []
    for trainer in args.trainers.split(","):
        print(f">> {trainer}", flush=True)
        cmd = [sys.executable, __file__, "--one", trainer, "--work", str(work)] + (
            ["--gpt2-size"] if args.gpt2_size else []
        )
        done = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        )
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if done.returncode or line is None:
            print(done.stdout[-2000:], done.stderr[-4000:])
            raise SystemExit(f"{trainer} failed")
        rows.append(json.loads(line[len("RESULT ") :]))
    header = (
        f"{'trainer':8} {'wall s':>7} {'peak MB':>8} {'win rate [95% CI]':>22} {'final KL':>9} "
        f"{'reward gain':>12} {'gain/s':>8}"
    )
    print(header)
    for r in rows:
        ci = f"{r['win_rate']:.2f} [{r['win_rate_ci95'][0]:.2f}-{r['win_rate_ci95'][1]:.2f}]"
        print(
            f"{r['trainer']:8} {r['wall_s']:>7.1f} {r['peak_mem_mb']:>8} {ci:>22} {r['final_kl']:>9.3f} "
            f"{r['reward_gain']:>12.3f} {r['reward_gain_per_s']:>8.4f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "model": "gpt2-size (124M)" if args.gpt2_size else "tiny gpt2 (2x64)",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "train_prompts": len(TRAIN),
        "held_out_prompts": len(HELD_OUT),
        "new_tokens": NEW_TOKENS,
        **info,
        "trainers": rows,
    }
    (RESULTS / "bench_policy.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'bench_policy.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
