"""Model-family facts (prefloop/family.py) over tiny GPT-2, Llama-, Qwen2- and BERT-style models loaded
through the production loaders: rendering for generation and scoring, special tokens, EOS lists, pad,
context length and LoRA defaults."""

from __future__ import annotations

import pytest

from prefloop import family as F
from prefloop.errors import InputError
from prefloop.models import load_tokenizer

CAUSAL = ("gpt2", "llama", "qwen2")
CHAT = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi"},
    {"role": "user", "content": "What is the news?"},
]


@pytest.fixture(scope="module")
def toks(tiny_family_dir):
    return {f: load_tokenizer(tiny_family_dir(f)) for f in ("gpt2", "llama", "qwen2", "bert")}


def test_conversation_is_hashable_and_validates():
    a, b = F.Conversation.of(CHAT), F.Conversation.of(list(CHAT))
    assert a == b and hash(a) == hash(b) and a.chat and len({a, b, F.Conversation.of("Hello")}) == 2
    assert F.Conversation.of("Hello").key == "Hello" and not F.Conversation.of("Hello").chat
    assert a.key == "User: Hello\nAssistant: Hi\nUser: What is the news?\nAssistant:"
    for bad in ([], [{"role": "user"}], [{"role": "user", "content": "  "}], "  "):
        with pytest.raises(InputError):
            F.Conversation.of(bad)


def test_gpt2_keeps_the_built_in_format(toks):
    tok = toks["gpt2"]
    assert F.generation_text(tok, "Tell me a joke.") == "Tell me a joke."
    assert F.generation_text(tok, CHAT).endswith("User: What is the news?\nAssistant:")
    assert F.scoring_text(tok, CHAT, " Fine. ") == F.generation_text(tok, CHAT) + " Fine."
    assert F.generation_ids(tok, "Hello")[0] != tok.eos_token_id  # GPT-2 adds no BOS


@pytest.mark.parametrize(
    "name,start,turn_end",
    [
        ("llama", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
        ("qwen2", "<|im_start|>assistant\n", "<|im_end|>"),
    ],
)
def test_native_chat_template_for_generation_and_scoring(toks, name, start, turn_end):
    """Chats and single prompts go through the tokenizer's own template (a prompt as one user turn);
    the reward text is the conversation with the answer as the last assistant turn, and it extends
    the generation prompt, so prompt/answer token boundaries agree."""
    tok = toks[name]
    for prompt in (CHAT, "What is the news?"):
        gen = F.generation_text(tok, prompt)
        assert gen.endswith(start) and "User:" not in gen
        scored = F.scoring_text(tok, prompt, " Fine. ")
        assert scored.startswith(gen) and scored[len(gen) :].startswith("Fine." + turn_end)
        ids = F.scoring_ids(tok, prompt, "Fine.")
        assert ids[: len(F.generation_ids(tok, prompt))] == F.generation_ids(tok, prompt)
    assert F.generation_text(tok, "Hi") == tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )


def test_bos_is_added_exactly_once(toks):
    """Templated text carries its BOS; plain text gets the tokenizer's own (Llama), never twice."""
    tok = toks["llama"]
    bos = tok.bos_token_id
    for prompt in (CHAT, "Hello"):
        ids = F.generation_ids(tok, prompt)
        assert ids[0] == bos and ids.count(bos) == 1
    assert F.encode(tok, "plain text", templated=False)[0] == bos
    assert F.scoring_ids(toks["bert"], "Hello", "yes")[0] == toks["bert"].cls_token_id


def test_chat_template_setting_overrides_for_chats_only(toks):
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]"
    for name in CAUSAL:
        assert F.generation_text(toks[name], CHAT, template).endswith("[user] What is the news?\n[assistant]")
        assert F.scoring_text(toks[name], CHAT, "ok", template).endswith("[assistant] ok")
    assert F.generation_text(toks["gpt2"], "Hello", template) == "Hello"


def test_eos_lists_pad_and_context(tiny_family_dir, toks):
    from prefloop.models import load_causal_lm

    ids = {name: toks[name].convert_tokens_to_ids for name in CAUSAL}
    llama = load_causal_lm(tiny_family_dir("llama"), pad_token_id=F.pad_id(toks["llama"]))
    assert set(F.eos_ids(toks["llama"], llama)) == {ids["llama"]("<|eot_id|>"), ids["llama"]("<|end_of_text|>")}
    assert F.eos_ids(toks["llama"], llama)[0] == toks["llama"].eos_token_id
    assert llama.config.pad_token_id == F.pad_id(toks["llama"]) == toks["llama"].eos_token_id  # no pad token
    assert not hasattr(llama.config, "n_positions") and F.context_length(llama.config, toks["llama"]) == 256
    qwen = load_causal_lm(tiny_family_dir("qwen2"), pad_token_id=F.pad_id(toks["qwen2"]))
    assert set(F.eos_ids(toks["qwen2"], qwen)) == {ids["qwen2"]("<|im_end|>"), ids["qwen2"]("<|endoftext|>")}
    assert F.pad_id(toks["qwen2"]) == ids["qwen2"]("<|endoftext|>")
    assert F.pad_id(toks["bert"]) == toks["bert"].pad_token_id
    gpt2 = load_causal_lm(tiny_family_dir("gpt2"), pad_token_id=F.pad_id(toks["gpt2"]))
    assert F.eos_ids(toks["gpt2"], gpt2) == (toks["gpt2"].eos_token_id,)


def test_decode_answer_stops_at_any_eos_and_drops_template_tokens(toks):
    tok = toks["qwen2"]
    body = tok("yes warm", add_special_tokens=False)["input_ids"]
    text_end, im_end = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|im_end|>")
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    assert F.decode_answer(tok, body + [text_end] + body, [im_end, text_end]) == "yes warm"
    assert F.decode_answer(tok, [im_start] + body + [im_end], [im_end, text_end]) == "yes warm"


def test_scoring_truncates_from_the_left_keeping_the_first_token(toks):
    for name, first in (("llama", toks["llama"].bos_token_id), ("bert", toks["bert"].cls_token_id)):
        ids = F.scoring_ids(toks[name], "word " * 100, "yes", max_length=16)
        assert len(ids) == 16 and ids[0] == first
        assert ids[-5:] == F.scoring_ids(toks[name], "word " * 100, "yes")[-5:]


def test_lora_defaults_per_family():
    assert F.lora_targets("llama") == ["q_proj", "k_proj", "v_proj", "o_proj"] == F.lora_targets("qwen2")
    assert F.lora_targets("gpt2") == ["c_attn", "c_proj"] and F.lora_targets("bert") == ["query", "key", "value"]
    assert F.lora_targets("some-new-arch") == "all-linear"
    assert F.lora_config("llama", F.LoraSettings(), "causal_lm") is None
    config = F.lora_config("gpt2", F.LoraSettings(r=4), "seq_cls")
    assert config.r == 4 and config.lora_alpha == 8 and config.fan_in_fan_out and config.task_type == "SEQ_CLS"
    custom = F.lora_config("llama", F.LoraSettings(r=2, alpha=5, target_modules=("q_proj",)), "causal_lm")
    assert custom.target_modules == {"q_proj"} and custom.lora_alpha == 5


def test_lora_settings_from_the_environment():
    from prefloop.errors import SettingsError
    from prefloop.settings import Settings

    s = Settings.from_env({"LORA_R": "8", "LORA_TARGET_MODULES": "q_proj, v_proj", "REWARD_BASE_MODEL": "/m/enc"})
    assert F.LoraSettings.from_settings(s) == F.LoraSettings(8, 0.0, 0.05, ("q_proj", "v_proj"))
    assert s.reward_base == "/m/enc" and Settings.from_env({"BASE_MODEL": "x"}).reward_base == "x"
    with pytest.raises(SettingsError, match="LORA_DROPOUT"):
        Settings.from_env({"LORA_DROPOUT": "1.5"})
