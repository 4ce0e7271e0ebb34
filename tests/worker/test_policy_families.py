"""DPO, GRPO and RLOO on more than GPT-2: a Llama-style policy (chat template, BOS, two EOS ids) with
LoRA and a reward model on its own backbone (a BERT-style encoder), and a Qwen2-style policy in
full fine-tuning. Each run publishes what generation loads back, with its KL measured."""

from __future__ import annotations

import json

import pytest
import torch

from prefloop.family import Conversation, LoraSettings, generation_ids, scoring_ids
from prefloop.models import is_adapter, load_causal_lm, load_tokenizer
from prefloop.preferences import PreferencePair

WORDS = "cats dogs music art science history weather market news economy technology data".split()
CHATS = [Conversation.of([{"role": "user", "content": f"Tell me about {w}."}]) for w in WORDS]
PAIRS = [PreferencePair(c.key, "yes warm clear help", "fox", i, conversation=c) for i, c in enumerate(CHATS)]
SHORT = {"max_new_tokens": 6, "kl_check_steps": 1, "kl_prompts": 4, "sample_prompts": 2, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def reward_on_bert(tiny_family_dir, tmp_path_factory):
    from worker.reward import train_reward

    out = tmp_path_factory.mktemp("rm-bert")
    train_reward(PAIRS, str(tiny_family_dir("bert")), out, {"device": "cpu", "eval_points": 0, "min_pairs": 4})
    return out


def test_dpo_rows_are_the_policy_family_rendering(tiny_family_dir):
    """The prompt DPO trains on is exactly generation_ids (chat template, BOS once); prompt + answer
    is scoring_ids, ending in the template's end of turn (no EOS appended after it)."""
    from worker.dpo.train import tokenize_pairs

    tok = load_tokenizer(tiny_family_dir("llama"))
    rows, dropped = tokenize_pairs(tok, PAIRS[:2], "", 256)
    assert dropped == 0
    for i, pair in enumerate(PAIRS[:2]):
        prompt = generation_ids(tok, pair.conv)
        assert rows["prompt_ids"][i] == prompt and prompt.count(tok.bos_token_id) == 1
        assert rows["prompt_ids"][i] + rows["chosen_ids"][i] == scoring_ids(tok, pair.conv, pair.chosen)
        assert rows["chosen_ids"][i][-1] == tok.convert_tokens_to_ids("<|eot_id|>")


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["dpo", "grpo", "rloo"])
def test_llama_policy_with_lora_and_a_bert_reward_model(trainer, tiny_family_dir, reward_on_bert, tmp_path):
    from worker.dpo.train import train_dpo
    from worker.online.train import train_online

    policy = tiny_family_dir("llama")
    lora = LoraSettings(r=4)
    if trainer == "dpo":
        metrics = train_dpo(
            PAIRS,
            policy,
            tmp_path,
            {**SHORT, "max_steps": 2, "min_pairs": 4},
            device="cpu",
            reward_source=reward_on_bert,
            base_model=str(policy),
            lora=lora,
        )
    else:
        metrics = train_online(
            trainer,
            CHATS,
            policy_source=policy,
            reward_source=reward_on_bert,
            out_dir=tmp_path,
            config={**SHORT, "steps": 2, "prompts_per_step": 2, "num_generations": 2},
            device="cpu",
            base_model=str(policy),
            lora=lora,
        )
    assert metrics["trainer"] == trainer and metrics["steps_done"] == 2 and abs(metrics["final_kl"]) < 5
    assert is_adapter(tmp_path), "a LoRA run publishes its adapter, naming the base it sits on"
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == str(policy)
    config = json.loads((tmp_path / f"{trainer}_config.json").read_text())
    assert config["lora"] is True
    samples = json.loads((tmp_path / "samples.json").read_text())
    assert samples[0]["prompt"].startswith("User: Tell me about") and isinstance(samples[0]["score_after"], float)
    load_causal_lm(tmp_path, device=torch.device("cpu"))  # what generation loads: base + adapter, merged


@pytest.mark.slow
def test_qwen2_policy_full_fine_tuning(tiny_family_dir, reward_on_bert, tmp_path):
    from worker.online.train import train_online

    policy = tiny_family_dir("qwen2")
    metrics = train_online(
        "grpo",
        CHATS,
        policy_source=policy,
        reward_source=reward_on_bert,
        out_dir=tmp_path,
        config={**SHORT, "steps": 2, "prompts_per_step": 2, "num_generations": 2},
        device="cpu",
        base_model=str(policy),
    )
    assert metrics["steps_done"] == 2 and not is_adapter(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["prefloop_base_model"] == str(policy)
    load_causal_lm(tmp_path, device=torch.device("cpu"))
