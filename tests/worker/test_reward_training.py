"""Reward-model training: a model that learns, versions published atomically, the job run by a real
worker against a real Redis and a real Label Studio, and a burst of webhooks that collapses."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from prefloop.artifacts import ArtifactStore
from prefloop.errors import JobSkipped
from prefloop.jobkinds import JobKind
from prefloop.label_config import load_label_config
from prefloop.queue import JobQueue
from prefloop.scoring import RewardScorer
from tests.support.reward_helpers import (
    SEED_RECIPE_LR,
    TINY_TRAINING,
    annotated_project,
    publish_copy,
    tiny_1024,
    trained_reward_model,
)
from tests.support.reward_synthetic import synthetic_pairs
from tests.support.services import Process, prefloop_env, wait_until
from worker.reward import split_by_prompt

WEBHOOK = json.loads((Path(__file__).parents[1] / "fixtures" / "webhooks.json").read_text())["ANNOTATION_CREATED"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_reward_model(str(tmp_path_factory.getbasetemp()))


def test_reward_model_learns_while_the_seed_recipe_learns_backwards(trained, tmp_path_factory, tmp_path):
    """On a learnable preference, held-out accuracy reaches 0.9; the seed's recipe on the same data is
    at or below chance."""
    from prefloop.scoring import rewards_from_ids, tokenize
    from prefloop.text import reward_text
    from tests.support.reward_seed import SeedRecipeConfig, train_seed_recipe
    from worker.reward.report import pairwise_accuracy

    _, metrics = trained
    assert metrics["eval/accuracy"] >= 0.9, metrics
    assert metrics["eval/margin_mean"] > 0

    train, held_out = split_by_prompt(synthetic_pairs(128, seed=3), 0.2, TINY_TRAINING["seed"])
    seed_config = SeedRecipeConfig(
        learning_rate=SEED_RECIPE_LR,
        num_train_epochs=1,
        per_device_train_batch_size=TINY_TRAINING["per_device_train_batch_size"],
    )
    base_model = tiny_1024(str(tmp_path_factory.getbasetemp()))
    model, tokenizer, _ = train_seed_recipe(train, base_model, tmp_path / "seed", seed_config)
    ids = tokenize(
        tokenizer,
        [reward_text(p.prompt, p.chosen) for p in held_out] + [reward_text(p.prompt, p.rejected) for p in held_out],
    )
    rewards = rewards_from_ids(model, ids, pad_token_id=tokenizer.pad_token_id)
    n = len(held_out)
    assert pairwise_accuracy(rewards[:n], rewards[n:]) <= 0.5


def test_a_run_writes_weights_config_metrics_data_and_curve_and_serving_scores_match(trained):
    """The run directory holds everything a version needs, and the served model reproduces the eval metrics."""
    out, metrics = trained
    for name in (
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "train_config.json",
        "metrics.json",
        "data.json",
        "curve.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "train_config.json").read_text())
    assert config["config"]["learning_rate"] is None and config["resolved"]["bf16"] is False
    assert config["resolved"]["learning_rate"] == metrics["train/learning_rate"]
    assert "auto_learning_rate" in config["resolved"]["learning_rate_from"]
    data = json.loads((out / "data.json").read_text())
    sides = ("train", "validation", "eval")
    assert sum(data["pairs"][s] for s in sides) == metrics["pairs_used"] == 128
    assert sum(len(data["annotation_ids"][s]) for s in sides) == 128
    assert not set(data["annotation_ids"]["validation"]) & set(data["annotation_ids"]["eval"])
    for key in (
        "eval/accuracy",
        "eval/margin_mean",
        "eval/reward_mean",
        "eval/reward_std",
        "eval/length_baseline_accuracy",
        "annotator_agreement",
        "pairs_used",
    ):
        assert key in metrics
    assert json.loads((out / "metrics.json").read_text()) == metrics

    _, held_out = split_by_prompt(synthetic_pairs(128, seed=3), 0.2, TINY_TRAINING["seed"])
    scorer = RewardScorer(out, device="cpu")
    chosen = scorer.score([p.prompt for p in held_out], [p.chosen for p in held_out])
    rejected = scorer.score([p.prompt for p in held_out], [p.rejected for p in held_out])
    margins = [c - r for c, r in zip(chosen, rejected)]
    assert sum(m > 0 for m in margins) / len(margins) == metrics["eval/accuracy"]
    assert sum(margins) / len(margins) == pytest.approx(metrics["eval/margin_mean"], abs=1e-3)


def test_training_stops_once_validation_loss_stops_improving_and_keeps_the_best_weights(trained):
    """The default run stops before its 30-epoch cap, and the saved weights are the best evaluation's:
    re-scoring the validation pairs with them gives exactly the best validation loss, not the last one."""
    import torch

    from prefloop.family import scoring_ids
    from prefloop.scoring import rewards_from_ids

    out, metrics = trained
    assert metrics["train/stopped_early"] is True and metrics["train/epochs"] < 30, metrics
    assert metrics["train/best_step"] < metrics["train/steps"]
    assert metrics["validation/pairs"] > 0 and metrics["eval/pairs"] > 0
    data = json.loads((out / "data.json").read_text())
    by_id = {p.annotation_ids[0]: p for p in synthetic_pairs(128, seed=3)}
    validation = [by_id[i] for i in data["annotation_ids"]["validation"]]
    scorer = RewardScorer(out, device="cpu")
    ids = [scoring_ids(scorer.tokenizer, p.conv, p.chosen) for p in validation] + [
        scoring_ids(scorer.tokenizer, p.conv, p.rejected) for p in validation
    ]
    rewards = torch.tensor(rewards_from_ids(scorer.model, ids, pad_token_id=scorer.pad_id))
    chosen, rejected = rewards[: len(validation)], rewards[len(validation) :]
    loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean() + 0.01 * ((chosen + rejected) ** 2).mean()
    assert len(validation) <= 16, "one evaluation batch, so TRL's eval_loss is this plain mean"
    assert loss.item() == pytest.approx(metrics["validation/loss_best"], abs=2e-3)


def test_eval_accuracy_carries_its_wilson_interval_and_pair_count(trained):
    from prefloop.stats import accuracy_interval

    _, metrics = trained
    n = metrics["eval/pairs"]
    interval = (metrics["eval/accuracy_ci_low"], metrics["eval/accuracy_ci_high"])
    assert interval == accuracy_interval(metrics["eval/accuracy"], n)
    assert metrics["eval/accuracy_ci_low"] <= metrics["eval/accuracy"] <= metrics["eval/accuracy_ci_high"]


def test_defaults_learn_from_few_pairs_where_the_old_fixed_defaults_stay_at_chance(tiny_model_dir, tmp_path):
    """96 pairs on the tiny offline model: the old defaults (1e-5, one epoch) cannot be told from chance;
    today's (learning rate from the model's size, epochs until validation stops improving) can."""
    from worker.reward import train_reward

    pairs = synthetic_pairs(96, seed=5)
    old = train_reward(
        pairs,
        tiny_model_dir,
        tmp_path / "old",
        {
            "learning_rate": 1e-5,
            "num_train_epochs": 1,
            "eval_points": 0,
            "lr_scheduler_type": "linear",
            "device": "cpu",
        },
    )
    new = train_reward(pairs, tiny_model_dir, tmp_path / "new", {"device": "cpu"})
    assert old["train/steps"] <= 10 and old["eval/accuracy_ci_low"] < 0.5, old
    assert new["train/learning_rate"] > 1e-4 and new["train/steps"] > old["train/steps"]
    assert new["eval/accuracy"] >= 0.85 and new["eval/accuracy_ci_low"] > 0.5, new


def test_learning_rate_is_chosen_from_the_model_size_and_bad_knobs_are_refused():
    from prefloop.errors import InputError
    from worker.reward.config import RewardTrainConfig, auto_learning_rate

    assert auto_learning_rate(124_000_000) == 1e-5
    assert 1e-3 <= auto_learning_rate(150_000) <= 2e-3
    assert 2e-5 <= auto_learning_rate(22_700_000) <= 5e-5
    assert auto_learning_rate(7_000_000_000) == 5e-6 and auto_learning_rate(124_000_000, lora=True) == 1e-4
    for bad, message in (
        ({"learning_rate": 0}, "learning_rate must be > 0"),
        ({"early_stopping_patience": -1}, "early_stopping_patience must not be negative"),
        ({"validation_fraction": 1.5}, "validation_fraction must be in"),
        ({"num_train_epochs": 0}, "num_train_epochs must be > 0"),
    ):
        with pytest.raises(InputError, match=message):
            RewardTrainConfig.from_overrides(bad)


def test_split_keeps_every_prompt_on_one_side():
    """Pairs sharing a prompt all land in train or all in eval."""
    pairs = synthetic_pairs(60, seed=1, prompts=12)
    train, held_out = split_by_prompt(pairs, 0.25, seed=0)
    assert train and held_out and len(train) + len(held_out) == 60
    assert not {p.prompt for p in train} & {p.prompt for p in held_out}


def test_too_little_data_is_skipped_not_trained(tmp_path, tiny_model_dir):
    """Fewer pairs than min_pairs, or a single prompt, skip the run with a reason."""
    from worker.reward import train_reward

    with pytest.raises(JobSkipped, match="at least 8"):
        train_reward(synthetic_pairs(3), tiny_model_dir, tmp_path / "a", {"device": "cpu"})
    with pytest.raises(JobSkipped, match="2 different prompts"):
        train_reward(synthetic_pairs(10, prompts=1), tiny_model_dir, tmp_path / "b", {"device": "cpu"})


@pytest.fixture(scope="module")
def ls_project(label_studio):
    return annotated_project(label_studio, n=40, seed=11)


def worker_env(settings, **extra):
    return prefloop_env(
        redis_url=settings.redis_url,
        model_dir=settings.model_dir,
        base_model=settings.base_model,
        label_studio_url=settings.label_studio_url,
        label_studio_api_key=settings.label_studio_api_key,
        job_min_interval=0,
        device="cpu",
        **extra,
    )


def test_training_job_runs_in_a_real_worker_and_publishes_a_version(ls_settings, ls_project, tmp_path):
    """A queued run reads Label Studio's annotations, publishes a current version with the ids it used,
    and queues PPO."""
    from worker.reward.job import run as run_job

    project_id = ls_project["project_id"]
    settings = replace(ls_settings, min_new_annotations=5, ppo_min_accuracy=0.0)
    queue = JobQueue(settings)
    enqueued = queue.enqueue(JobKind.TRAIN_REWARD, project_id, reason="test")
    worker = Process(
        ["worker", "--queue", "gpu"],
        worker_env(settings, min_new_annotations=5, ppo_min_accuracy=0.0),
        tmp_path / "worker.log",
    ).start()
    try:
        wait_until(
            lambda: queue.fetch(enqueued.job_id).get_status().value in ("finished", "failed"), 180, "the training job"
        )
    finally:
        worker.kill()
        worker.stop()
    job = queue.fetch(enqueued.job_id)
    assert job.get_status().value == "finished", worker.output()[-3000:]
    result = job.return_value()
    assert result["status"] == "published", result
    store = ArtifactStore(settings.model_dir)
    assert store.current(project_id)["reward"] == result["version"]
    version_dir = store.version_dir(project_id, "reward", result["version"])
    data = json.loads((version_dir / "data.json").read_text())
    used = sorted(i for side in ("train", "validation", "eval") for i in data["annotation_ids"][side])
    assert used == ls_project["annotation_ids"]
    assert data["conversion"]["dropped"]["skipped"] == 1
    assert result["metrics"]["pairs_used"] == 40 and job.meta["stage"] == "done"
    pushed = result["predictions"]  # every answered task's pick is written into Label Studio
    assert pushed["status"] == "done" and pushed["written"] == pushed["tasks"] - pushed["without_answers"] >= 40, pushed
    policy = queue.fetch(result["policy"]["job_id"])  # POLICY_TRAINER (default ppo) queued behind the reward model
    assert policy.kwargs["reward_version"] == result["version"] and policy.meta["kind"] == "policy"
    assert policy.kwargs["trainer"] == policy.meta["trainer"] == settings.policy_trainer == "ppo"

    again = run_job(settings, project_id, reason="no news", forced=False)
    assert again["status"] == "skipped" and "MIN_NEW_ANNOTATIONS" in again["reason"]


def test_a_killed_run_publishes_nothing_and_a_burst_of_webhooks_queues_one_run(
    ls_settings, ls_project, tmp_path, trained
):
    """While a run trains, 1,000 annotation webhooks leave one queued run; SIGKILL mid-run leaves the
    previous version serving."""
    from backend.app import create_app

    project_id = ls_project["project_id"]
    store = ArtifactStore(ls_settings.model_dir)
    previous = publish_copy(store, project_id, trained[0])
    queue = JobQueue(ls_settings)
    running = queue.enqueue(
        JobKind.TRAIN_REWARD,
        project_id,
        reason="long run",
        force=True,
        config={"num_train_epochs": 2000, "early_stopping_patience": 0},
    )
    worker = Process(["worker", "--queue", "gpu"], worker_env(ls_settings), tmp_path / "worker.log").start()
    try:

        def training():
            job = queue.fetch(running.job_id)
            return job.meta.get("stage") == "training" and (job.meta.get("progress") or {}).get("done", 0) >= 1

        wait_until(training, 180, "the run to start training", interval=0.2)

        client = create_app(ls_settings, test_config={"TESTING": True}).test_client()
        assert (
            client.post(
                "/setup", json={"project": f"{project_id}.1", "schema": load_label_config("pairwise")}
            ).status_code
            == 200
        )
        body = dict(WEBHOOK, project=dict(WEBHOOK["project"], id=project_id))
        answers = [client.post("/webhook", json=body).json for _ in range(1000)]
        assert {a["status"] for a in answers} == {"queued"} and len({a["job_id"] for a in answers}) == 1
        gpu = queue.queue("gpu")
        waiting = [j for j in gpu.get_job_ids() + gpu.scheduled_job_registry.get_job_ids() if f"-{project_id}-" in j]
        assert len(waiting) == 1 and waiting[0] != running.job_id
        assert gpu.started_job_registry.get_job_ids() == [running.job_id]
    finally:
        worker.kill()
        worker.stop()
    assert [v["version"] for v in store.versions(project_id, "reward")] == [previous]
    assert store.current(project_id)["reward"] == previous
    leftovers = list(store.kind_dir(project_id, "reward").glob(".tmp-*"))
    assert leftovers, "the killed run was writing into a staging directory"
