"""PPO in the loop: a reward model trained on a scripted annotator's choices makes the policy win
under that annotator's preference; a killed run publishes nothing; bad input skips with a reason.

The scripted annotator prefers the wordier answer (more whitespace-separated words). A random
2-layer GPT-2 emits words and word pieces at random, so its answers differ in that count, a reward
model can learn it from a few hundred pairs, and PPO can move the policy towards word-starting tokens.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from prefloop.artifacts import ArtifactStore
from prefloop.jobkinds import JobKind
from prefloop.label_config import load_label_config
from prefloop.models import load_causal_lm, load_reward_model, load_tokenizer
from prefloop.queue import JobQueue
from tests.support.services import Process, prefloop_env, wait_until

WORDS = "cats dogs music art science history weather market news economy technology data model answer".split()
PROMPTS = [f"Please explain {a} and {b}." for a in WORDS for b in WORDS if a != b]
random.Random(0).shuffle(PROMPTS)
TRAIN_PROMPTS, HELD_OUT = PROMPTS[:96], PROMPTS[96:128]
PPO_KNOBS = {
    "steps": 20,
    "rollout_batch_size": 64,
    "mini_batch_size": 16,
    "micro_batch_size": 16,
    "learning_rate": 1e-3,
    "max_prompt_tokens": 64,
    "kl_stop": 20.0,
}


def words(text: str) -> int:
    return len(text.split())


def annotate(prompt: str, a: str, b: str) -> dict | None:
    """The scripted annotator: the wordier answer is chosen; equal counts are skipped."""
    if words(a) == words(b):
        return None
    chosen, rejected = (a, b) if words(a) > words(b) else (b, a)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def job_settings(ls_settings, monkeypatch):
    """Settings a job run in this process reads through worker.runtime."""
    from worker import runtime

    s = replace(ls_settings, max_new_tokens=16, ppo_min_accuracy=0.6, regenerate_after_ppo=True)
    monkeypatch.setattr(runtime, "_settings", s)
    return s


def new_project(label_studio, prompts: list[str]) -> int:
    pid = label_studio.create_project(load_label_config("pairwise"), title="ppo test")
    if prompts:
        label_studio.import_tasks(pid, [{"prompt": p, "answer1": "", "answer2": ""} for p in prompts])
    return pid


def sample(model_dir, prompts: list[str], seed: int, max_new_tokens: int = 16) -> list[str]:
    from worker.ppo.rollout import sample_texts

    cpu = torch.device("cpu")
    torch.manual_seed(seed)
    return sample_texts(
        load_causal_lm(model_dir, device=cpu),
        load_tokenizer(model_dir),
        prompts,
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=64,
        batch_size=64,
        device=cpu,
    )


def publish_reward(
    store: ArtifactStore, pid: int, base: str, accuracy: float, *, weights_from: Path | None = None
) -> str:
    """A reward version with the given base and eval accuracy (weights only when a run will load it)."""
    with store.staging(pid, "reward") as staged:
        if weights_from is not None:
            model = load_reward_model(weights_from, device=torch.device("cpu"))
            model.config.prefloop_base_model = base
            model.save_pretrained(staged)
            load_tokenizer(weights_from).save_pretrained(staged)
        else:
            (staged / "config.json").write_text(json.dumps({"prefloop_base_model": base}))
        (staged / "metrics.json").write_text(json.dumps({"eval/accuracy": accuracy}))
        return store.publish(pid, "reward", staged)


@pytest.mark.slow
def test_closed_loop_policy_wins_under_the_annotators_preference(
    job_settings, label_studio, tiny_model_dir, one_thread
):
    """Pairs from the base policy -> scripted choices -> prefloop's reward model -> PPO job: the new policy's
    answers win >= 0.7 of head-to-head comparisons on held-out prompts, within the KL bound."""
    from worker.jobs import run_ppo
    from worker.reward import train_reward

    store = ArtifactStore(job_settings.model_dir)
    pid = new_project(label_studio, TRAIN_PROMPTS)
    rng = random.Random(1)
    asked = [rng.choice(TRAIN_PROMPTS) for _ in range(1600)]
    left, right = sample(tiny_model_dir, asked, seed=1), sample(tiny_model_dir, asked, seed=2)
    pairs = [p for p in map(annotate, asked, left, right) if p]
    with store.staging(pid, "reward") as staged:
        rm = train_reward(
            pairs,
            str(tiny_model_dir),
            staged,
            {
                "learning_rate": 2e-3,
                "num_train_epochs": 2,
                "per_device_train_batch_size": 16,
                "device": "cpu",
                "eval_points": 0,
                "warmup_ratio": 0.0,
            },
        )
        store.publish(pid, "reward", staged)
    assert rm["eval/accuracy"] >= job_settings.ppo_min_accuracy, rm

    result = run_ppo(pid, reason="closed-loop test", config=PPO_KNOBS)
    assert result["status"] == "published", result
    policy_dir = store.current_path(pid, "policy")
    assert store.current(pid)["policy"] == result["version"] == policy_dir.name
    for name in ("config.json", "tokenizer.json", "ppo_config.json", "metrics.json", "samples.json", "curve.png"):
        assert (policy_dir / name).is_file(), name
    metrics = json.loads((policy_dir / "metrics.json").read_text())
    assert 0 < metrics["final_kl"] <= PPO_KNOBS["kl_stop"], metrics
    assert metrics["stopped_early"] is None and len(metrics["history"]) == PPO_KNOBS["steps"]
    step = metrics["history"][-1]
    for key in (
        "objective/kl",
        "objective/rlhf_reward",
        "policy/clipfrac",
        "policy/entropy",
        "loss/value",
        "response/length",
    ):
        assert key in step, key
    samples = json.loads((policy_dir / "samples.json").read_text())
    assert samples and {"prompt", "before", "after", "score_before", "score_after"} <= set(samples[0])
    assert json.loads((policy_dir / "config.json").read_text())["prefloop_base_model"] == str(tiny_model_dir)

    prompts = HELD_OUT * 4
    base, tuned = sample(tiny_model_dir, prompts, seed=7), sample(policy_dir, prompts, seed=7)
    wins = sum(1.0 if words(t) > words(b) else 0.5 if words(t) == words(b) else 0.0 for t, b in zip(tuned, base))
    assert wins / len(prompts) >= 0.7, (wins / len(prompts), tuned[:3], base[:3])

    queued = [j for j in JobQueue(job_settings).jobs(pid) if j["kind"] == JobKind.GENERATE.value]
    assert len(queued) == 1 and result["regenerate"]["job_id"] == queued[0]["id"]  # REGENERATE_AFTER_PPO


def test_killed_run_publishes_nothing_and_the_previous_policy_keeps_serving(
    ls_settings, label_studio, tiny_model_dir, tmp_path
):
    """SIGKILL to the worker in the middle of PPO: no new version, the pointer still names the old policy."""
    settings = replace(ls_settings, max_new_tokens=8)
    store = ArtifactStore(settings.model_dir)
    pid = new_project(label_studio, TRAIN_PROMPTS[:16])
    publish_reward(store, pid, str(tiny_model_dir), 0.9, weights_from=tiny_model_dir)
    with store.staging(pid, "policy") as staged:
        shutil.copytree(tiny_model_dir, staged, dirs_exist_ok=True)
        previous = store.publish(pid, "policy", staged)
    serving = store.model_version(pid)

    env = prefloop_env(
        redis_url=settings.redis_url,
        model_dir=settings.model_dir,
        base_model=tiny_model_dir,
        device="cpu",
        label_studio_url=settings.label_studio_url,
        max_new_tokens=8,
        label_studio_api_key=settings.label_studio_api_key,
        omp_num_threads=1,
    )
    worker = Process(["worker", "--queue", "gpu"], env, tmp_path / "worker.log").start()
    try:
        queue = JobQueue(settings)
        queued = queue.enqueue(
            JobKind.PPO,
            pid,
            reason="kill test",
            rate_limited=False,
            config={"steps": 100000, "rollout_batch_size": 8, "mini_batch_size": 8, "micro_batch_size": 8},
        )

        def training():
            job = queue.fetch(queued.job_id)
            progress = (job.meta or {}).get("progress") if job else None
            return job.meta.get("stage") == "ppo" and progress and progress["done"] >= 2

        try:
            wait_until(training, 120, "PPO to run a few steps", interval=0.2)
        except TimeoutError:
            raise AssertionError(worker.output()[-4000:]) from None
        assert list((store.kind_dir(pid, "policy")).glob(".tmp-*")), "the run trains in a staging directory"
        worker.kill()
    finally:
        worker.stop()
    assert store.current(pid)["policy"] == previous and store.model_version(pid) == serving
    assert [v["version"] for v in store.versions(pid, "policy")] == [previous]
    load_causal_lm(store.current_path(pid, "policy"), device=torch.device("cpu"))  # still loads


def test_bad_input_skips_with_the_reason(job_settings, label_studio, tiny_model_dir):
    """No reward model, one below the bar, a LoRA one whose base is gone, no prompts: skipped, never failed.
    A reward model from another backbone than the policy is no reason to skip (it scores decoded text)."""
    from worker.jobs import run_ppo

    store = ArtifactStore(job_settings.model_dir)
    pid = new_project(label_studio, [])
    result = run_ppo(pid, reason="test")
    assert result["status"] == "skipped" and result["reason"].startswith("no reward model yet"), result

    version = publish_reward(store, pid, str(tiny_model_dir), 0.55)
    result = run_ppo(pid, reason="test")
    assert (
        result["status"] == "skipped"
        and "below PPO_MIN_ACCURACY=0.6" in result["reason"]
        and version in result["reason"]
    )

    lora = publish_reward(store, pid, "gpt2", 0.9)
    (store.kind_dir(pid, "reward") / lora / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(store.root / "gone")})
    )
    result = run_ppo(pid, reason="test")
    assert (
        result["status"] == "skipped"
        and "LoRA adapter on base model" in result["reason"]
        and lora in result["reason"]
        and "gone" in result["reason"]
    ), result

    publish_reward(store, pid, "gpt2", 0.9)  # another backbone: not a reason to skip
    result = run_ppo(pid, reason="test")
    assert result["status"] == "skipped" and result["reason"].startswith("no prompts"), result

    publish_reward(store, pid, str(tiny_model_dir), 0.9)
    result = run_ppo(pid, reason="test")
    assert result["status"] == "skipped" and result["reason"].startswith("no prompts"), result

    label_studio.import_tasks(pid, [{"prompt": "Hello", "answer1": "", "answer2": ""}])
    result = run_ppo(pid, reason="test", config={"rollout_batch_size": 10, "mini_batch_size": 4})
    assert result["status"] == "skipped" and "multiple of mini_batch_size" in result["reason"], result
    assert store.versions(pid, "policy") == [] and store.current(pid)["policy"] is None


def test_train_ppo_command_queues_a_run_with_its_knobs(settings, monkeypatch, capsys):
    """`prefloop train-ppo --project 7 --set steps=5 --force` queues one PPO job; a bad knob queues nothing."""
    from cli.main import main

    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    assert main(["train-ppo", "--project", "7", "--set", "steps=5", "--force"]) == 0
    [job] = JobQueue(settings).jobs(7)
    assert job["kind"] == "ppo" and job["status"] == "queued" and job["id"] in capsys.readouterr().out
    assert JobQueue(settings).fetch(job["id"]).kwargs == {
        "project_id": 7,
        "reason": "queued by hand (prefloop train-ppo)",
        "config": {"steps": 5},
        "force": True,
    }
    assert main(["train-ppo", "--project", "8", "--set", "stepz=5"]) == 1
    assert "no knob 'stepz'" in capsys.readouterr().err and JobQueue(settings).jobs(8) == []


def test_kl_guardrail_stops_and_keeps_the_policy_from_within_the_bound(tiny_model_dir, one_thread):
    """A KL past kl_stop ends the run and restores the weights from before the update that crossed it."""
    from worker.ppo.config import PPOConfig
    from worker.ppo.trainer import PPOTrainer

    config = PPOConfig(
        steps=30,
        rollout_batch_size=8,
        mini_batch_size=8,
        micro_batch_size=8,
        max_new_tokens=8,
        learning_rate=3e-2,
        kl_stop=1.0,
        max_prompt_tokens=32,
    )
    trainer = PPOTrainer(
        config, str(tiny_model_dir), lambda prompts, texts: [float(words(t)) for t in texts], device="cpu"
    )
    states = [{k: v.clone() for k, v in trainer.policy.state_dict().items()}]  # states[i]: weights before update i
    run = trainer.train(
        TRAIN_PROMPTS[:8],
        on_step=lambda step, m: states.append({k: v.clone() for k, v in trainer.policy.state_dict().items()}),
    )
    assert run.stopped_early and "passed kl_stop 1.0" in run.stopped_early, run
    crossed = len(run.history)  # the rollout after this many updates measured KL > 1.0
    assert 0 < crossed < config.steps and run.history[-1]["objective/kl"] <= config.kl_stop
    kept = states[crossed - 1]
    assert all(torch.equal(v, kept[k]) for k, v in trainer.policy.state_dict().items())
    assert run.final["objective/kl"] <= config.kl_stop and run.final["step"] == crossed - 1
