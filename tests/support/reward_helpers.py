"""Shared by the reward tests: one tiny reward model trained once per test session, a way to publish
copies of it, and a Label Studio project annotated with a learnable preference."""

from __future__ import annotations

import functools
import random
import shutil
from pathlib import Path

from prefloop.artifacts import ArtifactStore
from prefloop.label_config import load_label_config
from tests.support.reward_synthetic import synthetic_pairs

# The defaults: the learning rate is chosen from the model's size (the tiny random GPT-2 gets
# ~1.5e-3, GPT-2 small 1e-5) and training runs until the validation loss stops improving.
TINY_TRAINING = dict(per_device_train_batch_size=8, device="cpu", seed=0)
SEED_RECIPE_LR = 2e-3  # the seed recipe has no learning-rate choice of its own: a rate the tiny model learns at


@functools.cache
def tiny_1024(root: str) -> Path:
    """The tiny GPT-2 with room for the seed recipe's 550-token padding (n_positions=1024)."""
    from cli.tinymodel import build_tiny_gpt2

    return build_tiny_gpt2(Path(root) / "tiny-gpt2-1024", n_positions=1024)


@functools.cache
def trained_reward_model(root: str) -> tuple[Path, dict]:
    """(directory, metrics) of a tiny reward model trained once per session on the synthetic preference."""
    from worker.reward import train_reward

    out = Path(root) / "trained-reward-model"
    metrics = train_reward(synthetic_pairs(128, seed=3), tiny_1024(root), out, TINY_TRAINING)
    return out, metrics


def publish_copy(store: ArtifactStore, project_id: int, source: Path) -> str:
    """Publish a copy of a trained model directory as a new reward version of `project_id`."""
    with store.staging(project_id, "reward") as staged:
        shutil.copytree(source, staged, dirs_exist_ok=True)
        (staged / "version.json").unlink(missing_ok=True)
        return store.publish(project_id, "reward", staged)


def annotated_project(label_studio, n: int = 40, seed: int = 11) -> dict:
    """A Label Studio project (label_config/pairwise.xml) with `n` tasks whose preferred answer sits
    left or right at random, each annotated through the API choosing it (both `to_name` forms), plus
    one skipped annotation. Returns the project id and the annotation ids that carry a choice."""
    rng = random.Random(seed)
    project_id = label_studio.create_project(load_label_config("pairwise"), title=f"reward test {seed}")
    pairs = synthetic_pairs(n, seed=seed)
    sides = [rng.choice(("left", "right")) for _ in pairs]
    tasks = [
        {
            "data": {
                "prompt": p.prompt,
                "answer1": p.chosen if s == "left" else p.rejected,
                "answer2": p.rejected if s == "left" else p.chosen,
            }
        }
        for p, s in zip(pairs, sides)
    ]
    label_studio.import_tasks(project_id, tasks)
    stored = sorted(label_studio.tasks(project_id), key=lambda t: t["id"])
    chosen_ids = []
    for i, (task, side) in enumerate(zip(stored, sides)):
        if i % 2:
            chosen_ids.append(label_studio.annotate(task["id"], side)["id"])
        else:  # what API clients may write
            result = [
                {"from_name": "pw", "to_name": "answer1,answer2", "type": "pairwise", "value": {"selected": side}}
            ]
            chosen_ids.append(
                label_studio.api("POST", f"/api/tasks/{task['id']}/annotations", json={"result": result})["id"]
            )
    label_studio.api("POST", f"/api/tasks/{stored[0]['id']}/annotations", json={"result": [], "was_cancelled": True})
    return {"project_id": project_id, "annotation_ids": sorted(chosen_ids), "tasks": stored}
