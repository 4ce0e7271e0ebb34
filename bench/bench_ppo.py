"""PPO throughput and memory: prefloop's PPO against `trl.experimental.ppo.PPOTrainer` (trl 1.12.0),
side by side in one run, on the same model, prompts, reward model, batch sizes, response length
and PPO epochs.

    .venv/bin/python bench/bench_ppo.py                       # tiny GPT-2 (2 layers, 64 wide), CPU
    .venv/bin/python bench/bench_ppo.py --size small          # 4 layers, 256 wide
    .venv/bin/python bench/bench_ppo.py --gpt2-size           # GPT2Config() defaults (124M), for a GPU

TRL removed PPOTrainer in 1.13, so the TRL side runs as a subprocess in its own virtualenv. The
bench creates it when it is missing (a few minutes, from the package registry):

    python3 -m venv .venv-trl112
    .venv-trl112/bin/pip install torch==2.13.0 trl==1.12.0

(use the torch build that matches the machine, the same version as .venv's). Each side runs in a
fresh process, so peak memory (max RSS on CPU, torch's max allocated on a GPU) is its own.

Settings both sides share: rollout batch `--batch` episodes per step, mini-batches of `--mini`
(one optimizer step each), `--epochs` PPO epochs, `--new-tokens` sampled with temperature 1 and
no top-k/top-p, truncated at EOS, KL coefficient 0.05 (fixed), vf_coef 0.1, clip ranges 0.2,
gamma 1, lambda 0.95, prompts cut to their last 64 tokens. prefloop's run also pays for things TRL
does not do: a KL-bound snapshot before each update and one extra rollout measuring the final
policy; both are in its time. Episodes/s counts the `--steps * --batch` training episodes.

No offline GPT-2 tokenizer exists, so the GPT-2-sized model uses the tiny byte-level BPE padded
with added tokens to GPT-2's 50257 ids (every id decodes and re-encodes to itself).

Writes bench/results/bench_ppo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
TRL_VENV = REPO / ".venv-trl112"
SIZES = {"tiny": dict(n_layer=2, n_embd=64, n_head=2), "small": dict(n_layer=4, n_embd=256, n_head=4), "gpt2": {}}
WORDS = "cats dogs music art science history weather market news economy technology data model answer".split()
PROMPTS = [f"Please explain {a} and {b} in a few words." for a in WORDS for b in WORDS if a != b]


# --- setup (runs in .venv) ---------------------------------------------------------------------------
def ensure_trl_venv(python: Path) -> None:
    if python.exists():
        return
    import torch

    version = torch.__version__.split("+")[0]
    print(f">> creating {TRL_VENV} with torch=={version} trl==1.12.0 (once)", flush=True)
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(python.parent.parent)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"torch=={version}", "trl==1.12.0"], check=True)


def build_models(size: str, root: Path) -> tuple[Path, Path]:
    """(policy dir, reward dir): one seeded model both sides load."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from cli.tinymodel import build_tiny_gpt2

    policy, reward = root / f"policy-{size}", root / f"reward-{size}"
    if (reward / "config.json").exists():
        return policy, reward
    build_tiny_gpt2(policy, **({} if size == "gpt2" else SIZES[size]))
    if size == "gpt2":
        tok = AutoTokenizer.from_pretrained(policy)
        tok.add_tokens([f"<|x{i}|>" for i in range(GPT2Config().vocab_size - len(tok))])
        eos = tok.eos_token_id
        config = GPT2Config(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)  # architecture: the defaults
        torch.manual_seed(0)
        GPT2LMHeadModel(config).save_pretrained(policy)
        tok.save_pretrained(policy)
    torch.manual_seed(1)
    rm = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1)
    rm.config.pad_token_id = rm.config.eos_token_id
    rm.save_pretrained(reward)
    AutoTokenizer.from_pretrained(policy).save_pretrained(reward)
    return policy, reward


def run_side(python: str, side: str, spec: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [python, __file__, "--side", side, "--spec", str(spec)], env=env, cwd=REPO, capture_output=True, text=True
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"side"')]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{side} side failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return json.loads(lines[-1])


# --- the two sides (each in its own process) ------------------------------------------------------------
def peak_memory_mb(cuda: bool) -> dict:
    import torch

    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if cuda:
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def prefloop_side(spec: dict) -> dict:
    import torch

    from prefloop.scoring import RewardScorer
    from worker.ppo.config import PPOConfig
    from worker.ppo.trainer import PPOTrainer

    cfg = PPOConfig(
        steps=spec["steps"],
        rollout_batch_size=spec["batch"],
        mini_batch_size=spec["mini"],
        micro_batch_size=spec["mini"],
        forward_batch_size=spec["batch"],
        ppo_epochs=spec["epochs"],
        max_new_tokens=spec["new_tokens"],
        max_prompt_tokens=64,
        learning_rate=spec["lr"],
        init_kl_coef=0.05,
        target_kl=None,
        vf_coef=0.1,
    )
    trainer = PPOTrainer(cfg, spec["policy"], device=spec["device"])
    scorer = RewardScorer(spec["reward"], device=str(trainer.accelerator.device), batch_size=spec["batch"])
    trainer.score = scorer.score
    cuda = trainer.accelerator.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    run = trainer.train(spec["prompts"])
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "final_kl": run.final.get("objective/kl"), **peak_memory_mb(cuda)}


def trl_side(spec: dict) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    cuda = spec["device"] != "cpu" and torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(spec["policy"], padding_side="left")
    tok.pad_token = tok.eos_token
    models = [
        AutoModelForCausalLM.from_pretrained(spec["policy"]),
        AutoModelForCausalLM.from_pretrained(spec["policy"]),
        AutoModelForSequenceClassification.from_pretrained(spec["policy"], num_labels=1),
        AutoModelForSequenceClassification.from_pretrained(spec["reward"], num_labels=1),
    ]
    for m in models:
        m.config.pad_token_id = tok.pad_token_id
    policy, ref, value, reward = models
    ids = [tok(p).input_ids[-64:] for p in spec["prompts"]]
    data = Dataset.from_dict({"input_ids": ids})
    with tempfile.TemporaryDirectory() as out:
        args = PPOConfig(
            output_dir=out,
            per_device_train_batch_size=spec["batch"],
            gradient_accumulation_steps=1,
            num_mini_batches=spec["batch"] // spec["mini"],
            num_ppo_epochs=spec["epochs"],
            total_episodes=spec["steps"] * spec["batch"],
            response_length=spec["new_tokens"],
            local_rollout_forward_batch_size=spec["batch"],
            temperature=1.0,
            stop_token="eos",
            learning_rate=spec["lr"],
            kl_coef=0.05,
            vf_coef=0.1,
            cliprange=0.2,
            cliprange_value=0.2,
            gamma=1.0,
            lam=0.95,
            num_sample_generations=0,
            report_to="none",
            save_strategy="no",
            use_cpu=not cuda,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            seed=0,
            disable_tqdm=True,
            logging_steps=1000,
        )
        trainer = PPOTrainer(
            args=args,
            processing_class=tok,
            model=policy,
            ref_model=ref,
            reward_model=reward,
            train_dataset=data,
            eval_dataset=data.select(range(8)),
            value_model=value,
        )
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        trainer.train()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "trl": trl.__version__, **peak_memory_mb(cuda)}


# --- driver ---------------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--gpt2-size", action="store_true", help="GPT2Config() defaults (124M); same as --size gpt2")
    p.add_argument("--steps", type=int, default=6, help="PPO steps per side")
    p.add_argument("--batch", type=int, default=64, help="episodes per PPO step")
    p.add_argument("--mini", type=int, default=16, help="episodes per optimizer step")
    p.add_argument("--epochs", type=int, default=4, help="PPO epochs per rollout batch")
    p.add_argument("--new-tokens", type=int, default=32, help="response length (max new tokens)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--repeats", type=int, default=1, help="alternate the sides this many times; best run counts")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per side (0: torch's default). One by default: on a shared CPU, OpenMP "
        "threads competing with other processes made single runs swing more than 10x",
    )
    p.add_argument("--trl-python", default=str(TRL_VENV / "bin" / "python"))
    p.add_argument("--side", choices=["prefloop", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        spec = json.loads(Path(args.spec).read_text())
        if spec.get("threads"):
            import torch

            torch.set_num_threads(spec["threads"])
        result = (prefloop_side if args.side == "prefloop" else trl_side)(spec)
        episodes = spec["steps"] * spec["batch"]
        print(
            json.dumps(
                {"side": args.side, "episodes": episodes, "episodes_per_s": episodes / result["seconds"], **result}
            )
        )
        return
    size = "gpt2" if args.gpt2_size else args.size
    ensure_trl_venv(Path(args.trl_python))
    RESULTS.mkdir(parents=True, exist_ok=True)
    policy, reward = build_models(size, REPO / ".prefloop" / "bench" / "ppo-models")  # git-ignored cache
    spec = {
        "policy": str(policy),
        "reward": str(reward),
        "prompts": PROMPTS,
        "steps": args.steps,
        "batch": args.batch,
        "mini": args.mini,
        "epochs": args.epochs,
        "new_tokens": args.new_tokens,
        "lr": args.lr,
        "device": args.device,
        "threads": args.threads,
    }
    spec_path = RESULTS / "bench_ppo_spec.json"
    spec_path.write_text(json.dumps(spec))
    runs: dict[str, list[dict]] = {"prefloop": [], "trl": []}
    for _ in range(args.repeats):
        for side, python in (("prefloop", sys.executable), ("trl", args.trl_python)):
            runs[side].append(run_side(python, side, spec_path))
            r = runs[side][-1]
            print(
                f"{side:9} {r['episodes_per_s']:8.2f} episodes/s  {r['seconds']:7.1f} s  "
                f"peak RSS {r['peak_rss_mb']:8.1f} MB"
                + (f"  peak CUDA {r['peak_cuda_mb']:8.1f} MB" if "peak_cuda_mb" in r else ""),
                flush=True,
            )
    best = {side: max(rs, key=lambda r: r["episodes_per_s"]) for side, rs in runs.items()}
    ratio = best["prefloop"]["episodes_per_s"] / best["trl"]["episodes_per_s"]
    median = statistics.median(a["episodes_per_s"] / b["episodes_per_s"] for a, b in zip(runs["prefloop"], runs["trl"]))
    print(
        f"model={size} steps={args.steps} batch={args.batch} mini={args.mini} epochs={args.epochs} "
        f"new_tokens={args.new_tokens}: prefloop/TRL throughput ratio {ratio:.2f}x (best runs), "
        f"{median:.2f}x (median of paired runs)"
    )
    out = {
        "model": size,
        "settings": {k: v for k, v in spec.items() if k != "prompts"},
        "runs": runs,
        "best": best,
        "ratio": ratio,
        "ratio_median_paired": median,
        "machine": {"cpus": os.cpu_count()},
    }
    (RESULTS / "bench_ppo.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
