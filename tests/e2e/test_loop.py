"""The whole loop through Label Studio's API, everything real: prompts in, answers generated,
annotations train a reward model, Label Studio stores its predictions, PPO publishes a policy and
generation switches to it. The tests run in order on one project, each picking up where the last
one stopped, as a user's project would."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import filled, prompt_tasks, wait_filled
from tests.support.stack import finished, since
from worker.reward import RewardTrainConfig

pytestmark = pytest.mark.e2e

PROMPTS = [
    "What is the capital of France?",
    "Explain how a language model works.",
    "Write a short poem about the sea.",
    "How do I make a cup of tea?",
    "What is the latest news on the stock market?",
    "Why is the sky blue?",
    "Give me three tips for learning to code.",
    "What is a reward model?",
    "How can I sleep better?",
    "Tell me a fun fact about octopuses.",
    "Suggest a name for a small bakery.",
    "How do plants make their food?",
]
LATER_PROMPTS = ["What do cats like to eat?", "Describe a sunny morning."]
MIN_PAIRS = RewardTrainConfig().min_pairs  # fewer preference pairs and training skips


@pytest.fixture(scope="module")
def project(new_project) -> int:
    return new_project("e2e loop")


def test_connecting_the_backend_creates_the_webhook_and_registers_the_project(project, stack, label_studio):
    """Connecting in LS checks /health and /setup and creates a webhook to the backend."""
    hooks = label_studio.webhooks(project)
    assert any(h["url"].rstrip("/") == f"{stack.url}/webhook" and h["is_active"] for h in hooks), hooks
    assert stack.model_version(project) == "rm-none+pi-base"


def test_imported_prompts_get_both_answers(project, stack, label_studio):
    """Prompt-only tasks fire TASKS_CREATED; a generation job fills both answers in Label Studio."""
    t0 = time.time()
    label_studio.import_tasks(project, prompt_tasks(PROMPTS))
    tasks = wait_filled(label_studio, stack, project, len(PROMPTS))
    assert len(tasks) == len(PROMPTS) and all(filled(t) for t in tasks)
    assert {t["data"]["prompt"] for t in tasks} == set(PROMPTS)
    assert any(t["data"]["answer1"] != t["data"]["answer2"] for t in tasks), "two samples per prompt"
    job = stack.wait_job(project, "generate", lambda j: finished(j) and since(t0)(j), 30, "a finished generation job")
    assert job["reason"] == "TASKS_CREATED"


def test_annotations_train_a_reward_model_that_setup_reports(project, stack, label_studio):
    """Annotating through the API sends webhooks; once MIN_NEW_ANNOTATIONS exist the reward model
    trains from LS's annotations and /setup answers the new version."""
    tasks = label_studio.tasks(project)
    for i, task in enumerate(tasks[:MIN_PAIRS]):
        label_studio.annotate(task["id"], "left" if i % 3 else "right")
    stack.wait_job(
        project,
        "train_reward",
        lambda j: j["reason"] == "ANNOTATION_CREATED",
        30,
        "a training job queued by an ANNOTATION_CREATED webhook",
    )
    reward = stack.wait_version(project, "reward", None, 180)
    version = stack.model_version(project)
    assert version.startswith(f"{reward}+"), version
    versions = stack.get("/versions", project=project)
    assert version in versions["versions"]
    assert any(d["version"] == reward and d["metrics"] for d in versions["details"]), versions


def test_retrieve_predictions_stores_pairwise_predictions_in_label_studio(project, stack, label_studio):
    """ "Retrieve Predictions" makes LS call /predict; every task gets the reward model's pick,
    with the serving model_version and its probability as score."""
    label_studio.retrieve_predictions(project)
    version = stack.model_version(project)
    tasks = label_studio.tasks(project)
    for task in tasks:
        preds = [p for p in label_studio.predictions(task["id"]) if p["model_version"] == version]
        assert preds, f"task {task['id']} has no prediction of {version}: {label_studio.predictions(task['id'])}"
        result = preds[-1]["result"]
        assert result[0]["type"] == "pairwise" and result[0]["value"]["selected"] in ("left", "right")
        assert 0.5 <= preds[-1]["score"] <= 1.0


def test_ppo_publishes_a_policy_and_generation_switches_to_it(project, stack, label_studio):
    """A reward model that clears PPO_MIN_ACCURACY queues PPO; the new policy then writes the answers
    of newly imported prompts."""
    policy = stack.wait_version(project, "policy", None, 300)
    assert stack.model_version(project).endswith(f"+{policy}")
    ppo = stack.wait_job(project, "policy", finished, 30, "a finished policy job")
    assert ppo["trainer"] == "ppo" and ppo["result"], ppo
    before = {t["id"] for t in label_studio.tasks(project)}
    label_studio.import_tasks(project, prompt_tasks(LATER_PROMPTS))
    tasks = wait_filled(label_studio, stack, project, len(PROMPTS) + len(LATER_PROMPTS))
    new = [t for t in tasks if t["id"] not in before]
    assert len(new) == len(LATER_PROMPTS)
    for task in new:
        assert policy in json.dumps(task["data"]) + json.dumps(task.get("meta") or {}), (
            f"task {task['id']} does not record the policy that wrote it: {task['data']}"
        )


def test_status_page_shows_the_project_versions_and_jobs(project, stack):
    """The status page shows the serving versions and the finished jobs of the loop."""
    import requests

    html = requests.get(f"{stack.url}/status", params={"project": project}, timeout=10).text
    current = stack.current(project)
    assert current["reward"] in html and current["policy"] in html
    assert "train_reward" in html and "policy" in html and "ppo" in html and "generate" in html
