"""Every trainer under `accelerate launch` with two processes on CPU (gloo): reward training, PPO,
DPO, GRPO and RLOO each write a directory that is a publishable version (it publishes through
ArtifactStore and loads back through prefloop.models), trained by two processes.

On a machine without GPUs `accelerate launch --multi_gpu --num_processes 2` starts two processes
with torch.distributed's gloo backend (DEVICE=cpu; `--cpu` alone would start one process).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prefloop.artifacts import ArtifactStore
from prefloop.models import load_causal_lm, load_reward_model
from tests.support.services import free_port

WORDS = "cats dogs music art science history weather market news economy technology data".split()
TINY = ["--set", "max_new_tokens=6", "--set", "kl_check_steps=1"]


def launch(module: str, *args: str, tmp: Path) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "-m",
        module,
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[2], timeout=300)
    (tmp / f"{module}.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir):
    """Pairs, prompts and a reward model (trained in this process) for the launched runs."""
    from worker.reward import train_reward

    root = tmp_path_factory.mktemp("mp")
    pairs = [
        {"prompt": f"Please explain {w} and {v}.", "chosen": "yes warm clear help right", "rejected": "fox"}
        for w in WORDS
        for v in WORDS[:3]
    ]
    (root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (root / "prompts.jsonl").write_text("".join(json.dumps(f"Please explain {w}.") + "\n" for w in WORDS))
    train_reward(pairs, str(tiny_model_dir), root / "rm", {"device": "cpu", "eval_points": 0})
    return root


def publish(store: ArtifactStore, kind: str, out: Path) -> Path:
    with store.staging(1, kind) as staged:
        shutil.copytree(out, staged, dirs_exist_ok=True)
        version = store.publish(1, kind, staged)
    assert store.current(1)[kind] == version
    return store.version_dir(1, kind, version)


@pytest.mark.slow
def test_reward_training_under_two_processes(inputs, tiny_model_dir, tmp_path):
    out = tmp_path / "rm"
    launch(
        "worker.reward",
        "--pairs",
        str(inputs / "pairs.jsonl"),
        "--base-model",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--set",
        "device=cpu",
        "--set",
        "eval_points=0",
        tmp=tmp_path,
    )
    assert json.loads((out / "train_config.json").read_text())["resolved"]["processes"] == 2
    version = publish(ArtifactStore(tmp_path / "models"), "reward", out)
    assert isinstance(json.loads((version / "metrics.json").read_text())["eval/accuracy"], float)
    load_reward_model(version, device=torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ppo", "dpo", "grpo", "rloo"])
def test_policy_trainer_under_two_processes(trainer, inputs, tiny_model_dir, tmp_path):
    out = tmp_path / trainer
    policy = ["--policy", str(tiny_model_dir), "--out", str(out), "--device", "cpu"]
    if trainer == "ppo":
        launch(
            "worker.ppo",
            *policy,
            "--reward",
            str(inputs / "rm"),
            "--prompts",
            str(inputs / "prompts.jsonl"),
            "--set",
            "steps=2",
            "--set",
            "rollout_batch_size=4",
            "--set",
            "mini_batch_size=4",
            "--set",
            "micro_batch_size=4",
            "--set",
            "forward_batch_size=4",
            "--set",
            "max_new_tokens=6",
            tmp=tmp_path,
        )
    elif trainer == "dpo":
        launch(
            "worker.dpo",
            *policy,
            "--pairs",
            str(inputs / "pairs.jsonl"),
            "--reward",
            str(inputs / "rm"),
            "--set",
            "max_steps=2",
            "--set",
            "per_device_train_batch_size=4",
            *TINY,
            tmp=tmp_path,
        )
    else:
        launch(
            "worker.online",
            "--trainer",
            trainer,
            *policy,
            "--reward",
            str(inputs / "rm"),
            "--prompts",
            str(inputs / "prompts.jsonl"),
            "--set",
            "steps=2",
            "--set",
            "prompts_per_step=2",
            "--set",
            "num_generations=2",
            *TINY,
            tmp=tmp_path,
        )
    metrics = json.loads((out / "metrics.json").read_text())
    processes = metrics.get("processes", metrics.get(f"{trainer}/processes"))
    assert metrics["trainer"] == trainer and processes == 2 and metrics["steps_done"] == 2, metrics
    assert metrics["final_kl"] is not None and abs(metrics["final_kl"]) < 1.0
    assert (out / f"{trainer}_config.json").is_file() and (out / "samples.json").is_file()
    version = publish(ArtifactStore(tmp_path / "models"), "policy", out)
    load_causal_lm(version, device=torch.device("cpu"))
