"""Every model-facing worker path over several tiny families, loaded through prefloop.models as in
production (as TRL's tests run over several tiny models): generation of prompts and chats, reward
training and scoring (causal LMs and a BERT-style encoder, LoRA on and off), PPO with the reward
model on another backbone (LoRA on and off), publish and reload."""

from __future__ import annotations

import json

import pytest
import torch

from prefloop.family import Conversation, LoraSettings, eos_ids
from prefloop.models import is_adapter, is_peft, load_causal_lm, load_tokenizer, read_base_model_name
from prefloop.scoring import RewardScorer, order_confidence
from tests.support.reward_synthetic import synthetic_pairs
from worker.generation import Generator, SamplingConfig, task_seed

CHAT = Conversation.of(
    [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "What is the news?"},
    ]
)
PROMPTS = [Conversation.of("What is the latest news on the stock market?"), CHAT, Conversation.of("Cats")]
TINY_RM = dict(
    learning_rate=2e-3,
    num_train_epochs=1,
    per_device_train_batch_size=8,
    device="cpu",
    eval_points=0,
    seed=0,
    min_pairs=4,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_generation_of_prompts_and_chats(tiny_family_dir, family):
    """Two distinct clean answers per prompt and chat, reproducible from the seed, with the model's
    whole EOS list as stop ids."""
    gen = Generator.load(str(tiny_family_dir(family)), "pi-base")
    config = SamplingConfig(max_new_tokens=8, batch_size=2)
    seeds = [task_seed(p.key) for p in PROMPTS]
    results = gen.generate(PROMPTS, seeds, config)
    specials = [t for t in gen.tokenizer.all_special_tokens if t]
    for res in results:
        assert res.answers and res.answers[0] != res.answers[1], res
        assert not any(s in a for a in res.answers for s in specials), res.answers
    assert [r.answers for r in gen.generate(PROMPTS[::-1], seeds[::-1], config)][::-1] == [r.answers for r in results]
    assert set(gen.eos_ids) == set(eos_ids(gen.tokenizer, gen.model))
    assert len(gen.eos_ids) == (1 if family == "gpt2" else 2)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_sampling_stops_at_an_eos_id_the_tokenizer_does_not_name(tiny_family_dir, family):
    """A model that always emits the EOS id listed only in its generation config stops there."""
    from worker.ppo.rollout import encode_prompts, sample

    tok = load_tokenizer(tiny_family_dir(family), padding_side="left")
    lm = load_causal_lm(tiny_family_dir(family), device=torch.device("cpu"))
    other = next(i for i in eos_ids(tok, lm) if i != tok.eos_token_id)
    head = torch.nn.Linear(lm.config.hidden_size, lm.config.vocab_size, bias=True)
    torch.nn.init.zeros_(head.weight)
    head.bias.data.fill_(-30.0)
    head.bias.data[other] = 30.0
    lm.lm_head = head
    q, qm = encode_prompts(tok, PROMPTS, 64, "cpu", pad_token_id=tok.pad_token_id)
    responses, mask, ended = sample(
        lm, q, qm, max_new_tokens=6, eos_token_id=list(eos_ids(tok, lm)), pad_token_id=tok.pad_token_id
    )
    assert ended.all() and mask.sum(1).tolist() == [1] * len(PROMPTS)


@pytest.mark.parametrize("lora", [0, 4], ids=["full", "lora"])
@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "bert"])
def test_reward_training_publish_and_serve(tiny_family_dir, tmp_path, family, lora):
    """Trains on any backbone; the saved version (full weights, or an adapter naming its base) is served
    by RewardScorer with exactly the scores training evaluated, for prompts and chats."""
    from worker.reward import RewardTrainConfig, split_by_prompt, train_reward
    from worker.reward.report import pairwise_accuracy

    base = tiny_family_dir(family)
    pairs = synthetic_pairs(24, seed=3, prompts=8)
    chats = [Conversation.of(CHAT.messages()[:-1] + [{"role": "user", "content": f"Q{i}?"}]) for i in range(8)]
    pairs[:8] = [
        p.__class__(c.key, p.chosen, p.rejected, p.task_id, p.annotation_ids, conversation=c)
        for c, p in zip(chats, pairs[:8], strict=True)
    ]
    out = tmp_path / "rm"
    metrics = train_reward(pairs, base, out, TINY_RM, lora=LoraSettings(r=lora))
    assert is_adapter(out) == bool(lora) and (out / "model.safetensors").exists() == (not lora)
    assert read_base_model_name(out) == str(base)
    resolved = json.loads((out / "train_config.json").read_text())["resolved"]
    assert resolved["reward_base_model"] == str(base) and (resolved["lora"] is not None) == bool(lora)
    if lora:
        assert resolved["trainable_parameters"] < resolved["parameters"] / 2
    _, held = split_by_prompt(pairs, RewardTrainConfig().eval_fraction, TINY_RM["seed"])
    scorer = RewardScorer(out, device="cpu")
    chosen = scorer.score([p.conv for p in held], [p.chosen for p in held])
    rejected = scorer.score([p.conv for p in held], [p.rejected for p in held])
    assert metrics["eval/pairs"] == len(held) and pairwise_accuracy(chosen, rejected) == metrics["eval/accuracy"]
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    assert sum(margins) / len(margins) == pytest.approx(metrics["eval/margin_mean"], abs=1e-4)
    two = scorer.score([CHAT, CHAT], ["yes warm", "fox news"])
    assert two == scorer.score([CHAT, CHAT], ["yes warm", "fox news"]) and two[0] != two[1]
    three = ["yes warm", "fox news", "Sunny and warm."]  # a ranking task's answers, scored as predictions are
    rewards = scorer.score([CHAT] * 3, three)
    [(order, confidence)] = scorer.rank([CHAT], [three])
    assert [rewards[i] for i in order] == sorted(rewards, reverse=True)
    assert confidence == pytest.approx(order_confidence([rewards[i] for i in order]))


@pytest.mark.parametrize("lora", [0, 4], ids=["full", "lora"])
@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_ppo_with_an_encoder_reward_model_publishes_a_loadable_policy(tiny_family_dir, tmp_path, family, lora):
    """PPO scores the policy's decoded text with a reward model on another backbone (BERT-style,
    re-tokenized); with LoRA the reference is the adapter-disabled base (KL exactly 0 before the
    first update) and the version is an adapter that generation loads onto its base."""
    from worker.ppo.config import PPOConfig
    from worker.ppo.run import train_policy
    from worker.reward import train_reward

    reward = tmp_path / "rm"
    train_reward(synthetic_pairs(16, seed=5, prompts=8), tiny_family_dir("bert"), reward, TINY_RM)
    policy = tiny_family_dir(family)
    config = PPOConfig.from_overrides(
        dict(
            steps=1,
            rollout_batch_size=4,
            mini_batch_size=4,
            micro_batch_size=4,
            forward_batch_size=4,
            max_new_tokens=6,
            ppo_epochs=1,
            learning_rate=1e-3,
            sample_prompts=2,
            max_prompt_tokens=64,
        )
    )
    out = tmp_path / "policy"
    metrics = train_policy(
        PROMPTS + [Conversation.of("Good morning!")],
        policy_source=policy,
        reward_source=reward,
        out_dir=out,
        config=config,
        device="cpu",
        base_model=str(policy),
        lora=LoraSettings(r=lora),
    )
    assert metrics["steps_done"] == 1 and metrics["history"][0]["objective/kl"] == 0.0
    assert is_adapter(out) == bool(lora) and read_base_model_name(out) == str(policy)
    samples = json.loads((out / "samples.json").read_text())
    assert {s["prompt"] for s in samples} <= {p.key for p in PROMPTS} | {"Good morning!"}
    gen = Generator.load(str(out), "pi-test")
    assert not is_peft(gen.model)  # a LoRA version is merged onto its base for serving
    base, trained = load_causal_lm(policy).state_dict(), gen.model.state_dict()
    assert base.keys() == trained.keys() and any(not torch.equal(base[k], trained[k]) for k in base)
    assert gen.generate([CHAT], [1], SamplingConfig(max_new_tokens=6, batch_size=1))[0].seed == 1


def test_ppo_continues_a_published_lora_adapter_on_the_same_base(tiny_family_dir, tmp_path):
    """Starting from a LoRA version trains that adapter further; the new version still names the
    original base (no chain of versions), and the reference stays the base."""
    from worker.ppo.config import PPOConfig
    from worker.ppo.run import train_policy

    policy = tiny_family_dir("llama")
    config = PPOConfig.from_overrides(
        dict(
            steps=1,
            rollout_batch_size=4,
            mini_batch_size=4,
            micro_batch_size=4,
            forward_batch_size=4,
            max_new_tokens=6,
            ppo_epochs=1,
            learning_rate=1e-2,
            sample_prompts=1,
            max_prompt_tokens=64,
        )
    )
    score = lambda prompts, texts: [float(len(t)) for t in texts]  # noqa: E731  (the reward model is not the subject)
    first, second = tmp_path / "v1", tmp_path / "v2"
    train_policy(
        PROMPTS,
        policy_source=policy,
        out_dir=first,
        config=config,
        device="cpu",
        score=score,
        base_model=str(policy),
        lora=LoraSettings(r=4),
    )
    metrics = train_policy(
        PROMPTS,
        policy_source=first,
        out_dir=second,
        config=config,
        device="cpu",
        score=score,
        base_model=str(policy),
        lora=LoraSettings(r=4),
    )
    assert read_base_model_name(second) == str(policy) and is_adapter(second)
    assert metrics["history"][0]["objective/kl"] != 0.0  # the continued adapter already differs from the base
