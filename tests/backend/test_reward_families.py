"""/reward over reward models of several families, full and LoRA: a chat is rendered by the reward
model's own tokenizer (its chat template with the answer as the last assistant turn), a single prompt
as one user turn, exactly as RewardScorer (and so training) renders them."""

from __future__ import annotations

import pytest

from prefloop.artifacts import ArtifactStore
from prefloop.family import Conversation, LoraSettings, scoring_text
from prefloop.scoring import RewardScorer
from tests.support.reward_helpers import publish_copy
from tests.support.reward_synthetic import synthetic_pairs

CHAT = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi"},
    {"role": "user", "content": "What is the news?"},
]


@pytest.fixture(scope="module")
def reward_dirs(tiny_family_dir, tmp_path_factory):
    from worker.reward import train_reward

    out = {}
    for family, lora in (("llama", 0), ("bert", 4)):
        path = tmp_path_factory.mktemp(f"rm-{family}")
        train_reward(
            synthetic_pairs(16, seed=4, prompts=8),
            tiny_family_dir(family),
            path,
            dict(
                learning_rate=2e-3,
                num_train_epochs=1,
                per_device_train_batch_size=8,
                device="cpu",
                eval_points=0,
                seed=0,
                min_pairs=4,
            ),
            lora=LoraSettings(r=lora),
        )
        out[family] = path
    return out


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_reward_scores_chats_and_prompts_through_the_reward_tokenizer(client, settings, reward_dirs, family):
    version = publish_copy(ArtifactStore(settings.model_dir), 7, reward_dirs[family])
    items = [{"messages": CHAT, "response": "yes warm"}, {"prompt": "What is the news?", "response": "yes warm"}]
    r = client.post("/reward", json={"project": 7, "items": items})
    assert r.status_code == 200 and r.json["version"] == version, r.json
    scorer = RewardScorer(reward_dirs[family], device="cpu")
    expected = scorer.score([Conversation.of(CHAT), Conversation.of("What is the news?")], ["yes warm", "yes warm"])
    assert r.json["rewards"] == pytest.approx(expected, abs=1e-5)
    if family == "llama":  # the native template, not the built-in "User: ... Assistant:" text
        rendered = scoring_text(scorer.tokenizer, Conversation.of(CHAT), "x")
        assert "<|start_header_id|>assistant<|end_header_id|>" in rendered
        as_text = client.post(
            "/reward", json={"project": 7, "items": [{"prompt": Conversation.of(CHAT).key, "response": "yes warm"}]}
        ).json["rewards"][0]
        assert as_text != pytest.approx(r.json["rewards"][0], abs=1e-6)
