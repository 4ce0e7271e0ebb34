"""DPO, GRPO and RLOO in the loop, like PPO's closed-loop test: a scripted annotator with a fixed
preference (the wordier answer) labels pairs of the base policy's answers in Label Studio; the jobs
read them back through prefloop's own conversion (tasks_to_pairs); each trained policy beats the base
on held-out prompts under that preference (win rate >= 0.7) within its KL bound, and is published
with the shared report. Bad input skips with a reason; DPO's threshold and on-policy filter hold.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch

from prefloop.artifacts import ArtifactStore
from prefloop.jobkinds import JobKind
from prefloop.label_config import load_label_config, parse_pairwise_config
from prefloop.queue import JobQueue
from tests.worker.test_ppo_loop import HELD_OUT, TRAIN_PROMPTS, annotate, sample, words

KNOBS = {  # a tiny random GPT-2 needs far larger steps than GPT-2
    "dpo": {
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 16,
        "num_train_epochs": 2,
        "max_prompt_tokens": 64,
        "kl_stop": 20.0,
    },
    "grpo": {
        "learning_rate": 3e-3,
        "steps": 16,
        "prompts_per_step": 8,
        "num_generations": 8,
        "max_prompt_tokens": 64,
        "kl_stop": 20.0,
    },
    "rloo": {
        "learning_rate": 3e-3,
        "steps": 16,
        "prompts_per_step": 8,
        "num_generations": 8,
        "max_prompt_tokens": 64,
        "kl_stop": 20.0,
    },
}
ONE_STEP_DPO = {"min_pairs": 2, "max_steps": 1, "max_new_tokens": 4, "kl_prompts": 2}
"""A DPO run that only has to publish (the skip and data-reading tests): one step on few pairs."""
OLD = "pi-20250101-000000-old"  # a policy version that wrote some of the answers (for the on-policy filter)


@pytest.fixture(scope="module")
def loop(request, tmp_path_factory):
    """A Label Studio project whose tasks hold two base-policy answers each, annotated by the
    scripted annotator; a third of them recorded as written by an older policy. Module-scoped:
    the trainers' tests share it (and the reward model trained from it)."""
    label_studio = request.getfixturevalue("label_studio")
    tiny = request.getfixturevalue("tiny_model_dir")
    rng = random.Random(1)
    asked = [rng.choice(TRAIN_PROMPTS) for _ in range(800)]
    left, right = sample(tiny, asked, seed=1), sample(tiny, asked, seed=2)
    tasks = []
    for i, (prompt, a, b) in enumerate(zip(asked, left, right, strict=True)):
        choice = annotate(prompt, a, b)
        if choice is None:
            continue
        side = "left" if choice["chosen"] == a else "right"
        meta = {"policy_version": OLD if i % 3 == 0 else "pi-base", "prompt_key": prompt}
        result = [{"from_name": "pw", "to_name": "answer1,answer2", "type": "pairwise", "value": {"selected": side}}]
        tasks.append(
            {
                "data": {"prompt": prompt, "answer1": a, "answer2": b, "prefloop": meta},
                "annotations": [{"result": result}],
            }
        )
    pid = label_studio.create_project(load_label_config("pairwise"), title="policy trainers loop")
    label_studio.import_tasks(pid, tasks)
    return {"project_id": pid, "tasks": len(tasks), "tiny": tiny, "rm": tmp_path_factory.mktemp("loop-rm")}


@pytest.fixture
def job_settings(ls_settings, monkeypatch, tmp_path_factory):
    from worker import runtime

    s = replace(ls_settings, max_new_tokens=16, ppo_min_accuracy=0.6, model_dir=tmp_path_factory.mktemp("models"))
    monkeypatch.setattr(runtime, "_settings", s)
    return s


def reward_from_label_studio(settings, loop) -> str:
    """Train (once per module) and publish a reward model on the project's pairs, read back from
    Label Studio through tasks_to_pairs, as the reward job reads them."""
    from prefloop.labelstudio import LabelStudioClient
    from prefloop.preferences import tasks_to_pairs
    from tests.support.reward_helpers import publish_copy
    from worker.reward import train_reward

    if not (loop["rm"] / "config.json").is_file():
        client = LabelStudioClient(settings)
        pairs, _ = tasks_to_pairs(
            client.iter_tasks(loop["project_id"], fields="all"),
            parse_pairwise_config(client.get_label_config(loop["project_id"])),
        )
        metrics = train_reward(
            pairs,
            str(loop["tiny"]),
            loop["rm"],
            {
                "learning_rate": 2e-3,
                "num_train_epochs": 3,
                "per_device_train_batch_size": 16,
                "device": "cpu",
                "eval_points": 0,
                "warmup_ratio": 0.0,
            },
        )
        assert metrics["eval/accuracy"] >= settings.ppo_min_accuracy, metrics
    return publish_copy(ArtifactStore(settings.model_dir), loop["project_id"], loop["rm"])


def win_rate(tiny, policy_dir) -> float:
    prompts = HELD_OUT * 4
    base, tuned = sample(tiny, prompts, seed=7), sample(policy_dir, prompts, seed=7)
    wins = sum(
        1.0 if words(t) > words(b) else 0.5 if words(t) == words(b) else 0.0 for t, b in zip(tuned, base, strict=True)
    )
    return wins / len(prompts)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["dpo", "grpo", "rloo"])
def test_closed_loop_policy_wins_under_the_annotators_preference(trainer, label_studio, loop, job_settings, one_thread):
    """Label Studio's annotated pairs -> the POLICY job with this trainer -> a published version whose
    answers win >= 0.7 against the base on held-out prompts, within the trainer's KL bound."""
    from worker.jobs import train_policy

    store = ArtifactStore(job_settings.model_dir)
    pid = loop["project_id"]
    reward_version = reward_from_label_studio(job_settings, loop) if trainer != "dpo" else None
    result = train_policy(pid, reason="closed-loop test", trainer=trainer, config=KNOBS[trainer], force=True)
    assert result["status"] == "published" and result["trainer"] == trainer, result
    assert result["started_from"] == "pi-base" and result.get("reward_version") == reward_version
    policy_dir = store.current_path(pid, "policy")
    assert policy_dir.name == result["version"] == store.current(pid)["policy"]
    for name in (
        "config.json",
        "tokenizer.json",
        f"{trainer}_config.json",
        "metrics.json",
        "samples.json",
        "curve.png",
    ):
        assert (policy_dir / name).is_file(), name
    metrics = json.loads((policy_dir / "metrics.json").read_text())
    assert metrics["trainer"] == trainer and metrics["stopped_early"] is None, metrics
    assert 0 < metrics["final_kl"] <= KNOBS[trainer]["kl_stop"], metrics
    assert any("objective/kl" in row for row in metrics["history"]) and metrics["steps_done"] > 0
    assert any(k.startswith(f"{trainer}/") for row in metrics["history"] for k in row), "namespaced history"
    config = json.loads((policy_dir / f"{trainer}_config.json").read_text())
    assert config["learning_rate"] == KNOBS[trainer]["learning_rate"] and config["project_id"] == pid
    samples = json.loads((policy_dir / "samples.json").read_text())
    assert samples and {"prompt", "before", "after", "score_before", "score_after"} <= set(samples[0])
    if trainer == "dpo":
        # the pairs exactly as reward training reads them: every annotated task (repeated comparisons
        # merged by majority), both policies' answers
        assert metrics["dpo/pairs"] == result["pairs"] and 0.95 * loop["tasks"] <= result["pairs"] <= loop["tasks"]
    else:
        assert all(isinstance(s["score_after"], float) for s in samples) and metrics["samples_score_gain"] is not None
    assert win_rate(loop["tiny"], policy_dir) >= 0.7


@pytest.mark.slow
def test_dpo_on_policy_trains_only_on_pairs_the_current_policy_wrote(label_studio, loop, job_settings, one_thread):
    """on_policy=true: only tasks whose data.prefloop.policy_version is the serving policy (the base
    here) give pairs; the tasks an older policy answered are left out."""
    from worker.jobs import train_policy

    result = train_policy(
        loop["project_id"],
        reason="iterative",
        trainer="dpo",
        force=True,
        config={"on_policy": True, "max_steps": 2, "kl_check_steps": 1, "max_prompt_tokens": 64},
    )
    assert result["status"] == "published", result
    old = result["pairs"] - result["on_policy_pairs"]
    assert 0 < old and abs(old - result["pairs"] / 3) <= 0.05 * result["pairs"], result
    data = json.loads(
        (ArtifactStore(job_settings.model_dir).current_path(loop["project_id"], "policy") / "data.json").read_text()
    )
    assert len(data["task_ids"]) == result["on_policy_pairs"] == result["metrics"]["dpo/pairs"]


def test_bad_input_skips_with_the_reason(job_settings, label_studio, monkeypatch):
    """No reward model (GRPO/RLOO), a bad knob, too few pairs, an on-policy filter that leaves none,
    and no new annotations since the last DPO version: skipped with the reason, nothing published."""
    from worker.jobs import train_policy

    store = ArtifactStore(job_settings.model_dir)
    pid = label_studio.create_project(load_label_config("pairwise"), title="policy skips")
    for trainer in ("grpo", "rloo"):
        result = train_policy(pid, reason="test", trainer=trainer)
        assert result["status"] == "skipped" and result["reason"].startswith("no reward model yet"), result
        assert trainer.upper() in result["reason"]
    result = train_policy(pid, reason="test", trainer="grpo", config={"num_generations": 1})
    assert result["status"] == "skipped" and "num_generations must be at least 2" in result["reason"], result
    result = train_policy(pid, reason="test", trainer="dpo", config={"betaa": 1})
    assert result["status"] == "skipped" and "no knob 'betaa'" in result["reason"], result

    result = [{"from_name": "pw", "to_name": "answer1,answer2", "type": "pairwise", "value": {"selected": "left"}}]
    label_studio.import_tasks(
        pid,
        [
            {
                "data": {
                    "prompt": f"Question {i}?",
                    "answer1": "a b c",
                    "answer2": "d",
                    "prefloop": {"policy_version": OLD},
                },
                "annotations": [{"result": result}],
            }
            for i in range(4)
        ],
    )
    result = train_policy(pid, reason="test", trainer="dpo", force=True)
    assert result["status"] == "skipped" and "only 4 usable preference pair(s)" in result["reason"], result
    result = train_policy(pid, reason="test", trainer="dpo", force=True, config={"on_policy": True, "min_pairs": 2})
    assert result["status"] == "skipped" and "written by the current policy pi-base" in result["reason"], result
    result = train_policy(pid, reason="test", trainer="dpo", config={"min_pairs": 2})  # 4 annotations < 10
    assert result["status"] == "skipped" and "DPO_MIN_NEW_ANNOTATIONS=10" in result["reason"], result
    result = train_policy(pid, reason="test", trainer="dpo", force=True, config=ONE_STEP_DPO)
    assert result["status"] == "published", result
    from worker import runtime

    monkeypatch.setattr(runtime, "_settings", replace(job_settings, dpo_min_new_annotations=1))
    result = train_policy(pid, reason="test", trainer="dpo", config={"min_pairs": 2})
    assert result["status"] == "skipped" and result["reason"].startswith("0 new or changed annotation(s)"), result
    assert [v["version"] for v in store.versions(pid, "policy")] == [store.current(pid)["policy"]]


def test_dpo_trains_on_a_ranking_project_from_the_pairs_its_rankings_imply(job_settings, label_studio):
    """DPO reads a ranking project (label_config/ranking.xml) as reward training does: each ranking of
    three answers gives its three pairs."""
    from prefloop.label_config import ranking_items
    from worker.jobs import train_policy

    pid = label_studio.create_project(load_label_config("ranking"), title="dpo on rankings")
    region = {"from_name": "rank", "to_name": "answers", "type": "ranker"}
    label_studio.import_tasks(
        pid,
        [
            {
                "data": {"prompt": f"Question {i}?", "answers": ranking_items(["a b c", "a b", "d"])},
                "annotations": [
                    {"result": [{**region, "value": {"ranker": {"rank": ["answer1", "answer2", "answer3"]}}}]}
                ],
            }
            for i in range(3)
        ],
    )
    result = train_policy(pid, reason="test", trainer="dpo", force=True, config=ONE_STEP_DPO)
    assert result["status"] == "published" and result["pairs"] == 9, result
    assert result["metrics"]["dpo/pairs"] == 9


def test_train_policy_command_queues_the_trainer_with_its_knobs(settings, monkeypatch, capsys):
    """`prefloop train-policy --trainer grpo --set beta=0.1` queues one POLICY job naming the trainer;
    a knob of another trainer or an unknown trainer queues nothing; --knobs lists the trainer's knobs."""
    from cli.main import main

    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    assert main(["train-policy", "--project", "7", "--trainer", "grpo", "--set", "beta=0.1", "--force"]) == 0
    [job] = JobQueue(settings).jobs(7)
    assert job["kind"] == JobKind.POLICY.value and job["trainer"] == "grpo" and job["id"] in capsys.readouterr().out
    assert JobQueue(settings).fetch(job["id"]).kwargs == {
        "project_id": 7,
        "reason": "queued by hand (prefloop train-policy --trainer grpo)",
        "trainer": "grpo",
        "config": {"beta": 0.1},
        "force": True,
    }
    assert main(["train-policy", "--project", "8", "--trainer", "dpo", "--set", "num_generations=4"]) == 1
    assert "DPO config has no knob 'num_generations'" in capsys.readouterr().err and JobQueue(settings).jobs(8) == []
    with pytest.raises(SystemExit):
        main(["train-policy", "--project", "8", "--trainer", "sft"])
    monkeypatch.setenv("POLICY_TRAINER", "rloo")
    assert main(["train-policy", "--knobs"]) == 0
    out = capsys.readouterr().out
    assert "reward_clip_range" in out and "num_generations" in out


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
