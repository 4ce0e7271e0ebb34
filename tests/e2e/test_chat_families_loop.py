"""The loop once more through the real Label Studio, with the model choice of a chat deployment: a
tiny Llama-style instruct policy (its own chat template and EOS list) trained with LoRA, and a
BERT-style encoder as the reward model (REWARD_BASE_MODEL, LoRA too). Chat tasks get clean answers,
a reward model and a policy version are published as adapters naming their bases, and Retrieve
Predictions stores the reward model's picks. The tests run in order on one project."""

from __future__ import annotations

import json

import pytest

from prefloop.label_config import load_label_config
from prefloop.models import adapter_base, is_adapter
from tests.e2e.conftest import filled, keep_logs, wait_filled
from tests.support.services import wait_until
from tests.support.stack import Stack, finished
from worker.reward import RewardTrainConfig

pytestmark = pytest.mark.e2e

CHATS = [
    [{"role": "user", "content": f"Question {i}: what is the news on {topic}?"}]
    if i % 2
    else [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": f"Tell me about {topic}."},
    ]
    for i, topic in enumerate(
        [
            "the market",
            "cats",
            "the weather",
            "music",
            "science",
            "history",
            "art",
            "dogs",
            "school",
            "the economy",
            "technology",
            "language models",
        ]
    )
]
MIN_PAIRS = RewardTrainConfig().min_pairs
TEMPLATE_TOKENS = ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>", "<|end_of_text|>")


@pytest.fixture(scope="module")
def chat_stack(label_studio, tiny_family_dir, tmp_path_factory):
    s = Stack(
        tmp_path_factory.mktemp("chat-stack"),
        label_studio,
        tiny_family_dir("llama"),
        extra={"reward_base_model": tiny_family_dir("bert"), "lora_r": 4, "reward_learning_rate": 2e-3},
    ).start()
    yield s
    s.stop()
    keep_logs(s, "chat-stack")


@pytest.fixture(scope="module")
def project(label_studio, chat_stack) -> int:
    pid = label_studio.create_project(load_label_config("pairwise_chat"), title="e2e chat families")
    label_studio.connect_backend(pid, chat_stack.url, title="prefloop")
    return pid


def test_chat_tasks_get_clean_answers_from_the_llama_style_policy(project, chat_stack, label_studio, tiny_family_dir):
    label_studio.import_tasks(project, [{"messages": m, "answer1": "", "answer2": ""} for m in CHATS])
    tasks = wait_filled(label_studio, chat_stack, project, len(CHATS), timeout=180)
    assert all(filled(t) for t in tasks)
    for task in tasks:
        answers = (task["data"]["answer1"], task["data"]["answer2"])
        assert answers[0] != answers[1] and not any(tok in a for a in answers for tok in TEMPLATE_TOKENS), answers
        assert task["data"]["prefloop"]["model"] == str(tiny_family_dir("llama"))


def test_annotations_train_an_encoder_reward_model_published_as_an_adapter(
    project, chat_stack, label_studio, tiny_family_dir
):
    for i, task in enumerate(label_studio.tasks(project)[:MIN_PAIRS]):
        label_studio.annotate(task["id"], "left" if i % 3 else "right")
    reward = chat_stack.wait_version(project, "reward", None, 240)
    path = chat_stack.store.version_dir(project, "reward", reward)
    assert is_adapter(path) and adapter_base(path) == str(tiny_family_dir("bert"))
    resolved = json.loads((path / "train_config.json").read_text())["resolved"]
    assert resolved["reward_base_model"] == str(tiny_family_dir("bert")) and resolved["lora"]["r"] == 4


def test_retrieve_predictions_stores_the_encoder_reward_models_picks(project, chat_stack, label_studio):
    """Every task carries a prediction of the serving version. The policy may publish meanwhile (the
    serving version then moves on and the picks are relabelled), so the version is read on each look."""
    chat_stack.wait_job(project, "train_reward", finished, 60, "a finished reward job")
    label_studio.retrieve_predictions(project)

    def every_task_predicted():
        version = chat_stack.model_version(project, load_label_config("pairwise_chat"))
        assert version.startswith(chat_stack.current(project)["reward"])
        latest = {}
        for task in label_studio.tasks(project):
            preds = [p for p in label_studio.predictions(task["id"]) if p["model_version"] == version]
            if not preds:
                return None
            latest[task["id"]] = preds[-1]
        return latest

    latest = wait_until(every_task_predicted, 60, "a prediction of the serving version on every task", interval=1.0)
    for pred in latest.values():
        assert pred["result"][0]["value"]["selected"] in ("left", "right") and 0.5 <= pred["score"] <= 1


def test_ppo_publishes_a_lora_policy_on_the_llama_base(project, chat_stack, tiny_family_dir):
    policy = chat_stack.wait_version(project, "policy", None, 420)
    path = chat_stack.store.version_dir(project, "policy", policy)
    assert is_adapter(path) and adapter_base(path) == str(tiny_family_dir("llama"))
    assert chat_stack.model_version(project, load_label_config("pairwise_chat")).endswith(f"+{policy}")
