"""The reward commands: train-reward queues a forced run, jobs shows it, versions lists and switches,
and an exported JSONL trains outside the queue."""

from __future__ import annotations

import json

from cli.main import main
from prefloop.artifacts import ArtifactStore
from prefloop.queue import JobQueue
from tests.support.reward_helpers import publish_copy, trained_reward_model
from tests.support.reward_synthetic import synthetic_pairs


def use(monkeypatch, settings):
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("MODEL_DIR", str(settings.model_dir))


def test_train_reward_queues_a_forced_run_that_jobs_lists(settings, monkeypatch, capsys):
    """`prefloop train-reward --force` queues one forced job (with knob overrides); `prefloop jobs` shows it."""
    use(monkeypatch, settings)
    assert main(["train-reward", "--project", "4", "--force", "--set", "num_train_epochs=2"]) == 0
    out = capsys.readouterr().out
    job_id = out.split("job ")[1].split()[0]
    job = JobQueue(settings).fetch(job_id)
    assert job.kwargs == {
        "project_id": 4,
        "reason": "prefloop train-reward",
        "force": True,
        "config": {"num_train_epochs": 2},
    }
    assert main(["jobs", "--project", "4"]) == 0
    listed = capsys.readouterr().out
    assert job_id in listed and "train_reward" in listed and "queued" in listed
    assert main(["train-reward", "--project", "4", "--set", "no_such_knob=1"]) != 0


def test_train_reward_without_force_trains_only_on_a_change(settings, monkeypatch, capsys):
    """Without --force, `prefloop train-reward` is the Train button: the job trains if any annotation changed."""
    use(monkeypatch, settings)
    assert main(["train-reward", "--project", "5"]) == 0
    job_id = capsys.readouterr().out.split("job ")[1].split()[0]
    assert JobQueue(settings).fetch(job_id).kwargs == {
        "project_id": 5,
        "reason": "prefloop train-reward",
        "on_change": True,
    }


def test_versions_lists_metrics_and_switches_back(settings, monkeypatch, capsys, tmp_path_factory):
    """`prefloop versions` shows each version's accuracy; --set-current makes an older one serve again."""
    use(monkeypatch, settings)
    trained, _ = trained_reward_model(str(tmp_path_factory.getbasetemp()))
    store = ArtifactStore(settings.model_dir)
    first = publish_copy(store, 4, trained)
    second = publish_copy(store, 4, trained)
    assert main(["versions", "--project", "4"]) == 0
    out = capsys.readouterr().out
    assert f"* reward {second}" in out and f"  reward {first}" in out and "accuracy=" in out
    assert main(["versions", "--project", "4", "--set-current", first]) == 0
    assert store.current(4)["reward"] == first
    assert main(["versions", "--project", "4", "--set-current", "rm-20000101T000000000000"]) == 1


def test_exported_pairs_train_outside_the_queue(tmp_path, tiny_model_dir, capsys):
    """`python -m worker.reward` trains a complete version directory from an exported JSONL."""
    from worker.reward.__main__ import main as reward_cli

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p.trl_record()) + "\n" for p in synthetic_pairs(16, seed=2)))
    out = tmp_path / "rm"
    assert (
        reward_cli(
            [
                "--pairs",
                str(pairs),
                "--base-model",
                str(tiny_model_dir),
                "--out",
                str(out),
                "--set",
                "device=cpu",
                "--set",
                "eval_points=0",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert '"pairs_used": 16' in capsys.readouterr().out
    assert metrics["pairs_used"] == 16 and (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()


def test_exported_pairs_train_a_lora_adapter_on_the_configured_reward_base(tmp_path, tiny_model_dir, monkeypatch):
    """The command reads the job's settings: REWARD_BASE_MODEL when --base-model is not given, and
    LORA_R > 0 makes the version a LoRA adapter naming its base, as a queued run would."""
    from worker.reward.__main__ import main as reward_cli

    monkeypatch.setenv("REWARD_BASE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("LORA_R", "4")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p.trl_record()) + "\n" for p in synthetic_pairs(16, seed=3)))
    out = tmp_path / "rm-lora"
    assert reward_cli(["--pairs", str(pairs), "--out", str(out), "--set", "device=cpu", "--set", "eval_points=0"]) == 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_model_dir) and adapter["r"] == 4
    assert not (out / "model.safetensors").exists(), "a LoRA version stores the adapter, not a full copy"
    assert json.loads((out / "metrics.json").read_text())["pairs_used"] == 16


def test_versions_shows_the_accuracy_interval_and_calls_overlapping_versions_within_noise(
    settings, monkeypatch, capsys
):
    use(monkeypatch, settings)
    store = ArtifactStore(settings.model_dir)
    versions = []
    for metrics in (
        {"eval/accuracy": 0.5556, "eval/pairs": 27},
        {"eval/accuracy": 0.7407, "eval/pairs": 27},
        {"eval/accuracy": 0.93, "eval/pairs": 400},
    ):
        with store.staging(6, "reward") as staged:
            (staged / "config.json").write_text("{}")
            (staged / "metrics.json").write_text(json.dumps(metrics))
            versions.append(store.publish(6, "reward", staged))
    assert main(["versions", "--project", "6"]) == 0
    lines = {
        line.split()[2] if line.startswith("*") else line.split()[1]: line
        for line in capsys.readouterr().out.splitlines()
        if "reward" in line
    }
    assert "accuracy=0.556 [95% CI 0.37-0.72, 27 pairs]" in lines[versions[0]] and "noise" not in lines[versions[0]]
    assert f"(overlaps {versions[0]}: within noise)" in lines[versions[1]]
    assert f"(better than {versions[1]})" in lines[versions[2]]


def test_export_summary_has_per_annotator_agreement_with_the_majority_and_the_reward_model(
    settings, monkeypatch, capsys, tmp_path, tmp_path_factory
):
    """From a JSON export: agreement with the others' majority; with --project and a published reward
    model, also with that model's picks (scored through the serving code)."""
    from types import SimpleNamespace

    from cli.commands.export import annotator_summary
    from prefloop.label_config import load_label_config, parse_pairwise_config
    from prefloop.preferences import tasks_to_pairs

    use(monkeypatch, settings)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    pairs = synthetic_pairs(6, seed=2)
    tasks = [
        {
            "id": i,
            "data": {"prompt": p.prompt, "answer1": p.chosen, "answer2": p.rejected},
            "annotations": [
                {
                    "id": 10 * i + who,
                    "completed_by": who,
                    "result": [{"from_name": "pw", "to_name": "pw", "type": "pairwise", "value": {"selected": side}}],
                }
                for who, side in ((1, "left"), (2, "left"), (3, "right"))
            ],
        }
        for i, p in enumerate(pairs)
    ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    assert main(["export", "--tasks-file", str(export), "-o", str(tmp_path / "pairs.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "per annotator" in err and "majority 0.00 [0.00-0.39] of 6" in err  # annotator 3 against 1 and 2
    assert "model" not in err.split("per annotator")[1].splitlines()[0]

    trained, _ = trained_reward_model(str(tmp_path_factory.getbasetemp()))
    version = publish_copy(ArtifactStore(settings.model_dir), 4, trained)
    _, summary = tasks_to_pairs(tasks, parse_pairwise_config(load_label_config("pairwise")))
    from prefloop.settings import Settings

    text = annotator_summary(Settings.from_env(), SimpleNamespace(no_model=False, project=4), summary.votes)
    assert f"with reward model {version}" in text
    by_annotator = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert "model 1.00 [0.61-1.00] of 6" in by_annotator["1"], text  # the synthetic preference, learnt
    assert "model 0.00 [0.00-0.39] of 6" in by_annotator["3"], text
