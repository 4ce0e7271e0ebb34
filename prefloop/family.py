"""Model-family facts, in one place: how text reaches a model and how its answer comes back.

Generation, reward training, scoring (`/predict`, `/reward`), PPO and the preference trainers ask
here, so the same conversation reaches every model the same way:

- A prompt travels as a `Conversation`: the turns of a chat task, or the text of a single-prompt
  task (`chat=False`). It is rendered only at a model's boundary, by that model's tokenizer.
- Rendering for generation (`generation_text`/`generation_ids`), in this order: `CHAT_TEMPLATE`
  when set (a Jinja template over `messages` that ends where the answer starts; it applies to
  chats, a single prompt stays as written); else the tokenizer's own chat template, with
  `add_generation_prompt=True` (a single prompt becomes one user turn); else (GPT-2) the built-in
  "User: ...\\nAssistant:" rendering for chats and the bare text for a single prompt.
- Rendering for reward scoring (`scoring_text`/`scoring_ids`): with the tokenizer's own chat
  template, the whole conversation with the answer as the last assistant turn; otherwise the
  generation rendering + `RESPONSE_SEPARATOR` + the stripped answer.
- Special tokens: text that went through a native chat template carries them already, so it is
  tokenized with `add_special_tokens=False`; any other text is tokenized with the tokenizer's own
  special tokens (BOS for Llama-style tokenizers, [CLS]/[SEP] for BERT, none for GPT-2). That one
  rule holds for generation, scoring, reward training and PPO.
- End of an answer: any of `eos_ids` (the tokenizer's EOS plus every id in the config's and
  `generation_config.json`'s `eos_token_id`, which instruct models list: end of turn, end of text).
  `decode_answer` cuts at the first of them and drops special tokens, so a stored answer never
  holds template tokens.
- Pad: the tokenizer's pad token, else its EOS (GPT-2, Llama 3); always one int. Padding side:
  left for generation, right for scoring and training (`PADDING_SIDE`).
- LoRA: `lora_targets(model_type)` are the default target modules per family; `lora_config(...)`
  builds the peft config from `LoraSettings` (LORA_R > 0 turns it on).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prefloop.errors import InputError

Message = dict[str, str]
"""One chat turn: {"role": "user" | "assistant" | "system" | ..., "content": "..."}."""
Purpose = Literal["generate", "score"]
PADDING_SIDE: dict[str, str] = {"generate": "left", "score": "right"}

DEFAULT_CHAT_TEMPLATE = "{% for m in messages %}{{ m.role | capitalize }}: {{ m.content }}\n{% endfor %}Assistant:"
"""The built-in rendering of a chat for a model without a chat template of its own (GPT-2)."""
RESPONSE_SEPARATOR = " "
"""Joins a rendered prompt and an answer for scoring when no native chat template does."""


@dataclass(frozen=True, order=True)
class Conversation:
    """A prompt as prefloop carries it: hashable and ordered (sets, dict keys, sorted splits).

    `turns` are (role, content) pairs; the last one is the user's. `chat` is False for a
    single-prompt task: one user turn that models without a chat template see as bare text."""

    turns: tuple[tuple[str, str], ...]
    chat: bool = True

    @classmethod
    def of(cls, value: Conversation | str | Sequence[Message], where: str = "prompt") -> Conversation:
        """A Conversation from itself, from a prompt string, or from a list of messages."""
        if isinstance(value, Conversation):
            return value
        if isinstance(value, str):
            if not value.strip():
                raise InputError(f"{where}: the prompt is empty")
            return cls((("user", value),), chat=False)
        return cls(tuple((m["role"], m["content"]) for m in validate_messages(value, where)), chat=True)

    def messages(self) -> list[Message]:
        return [{"role": role, "content": content} for role, content in self.turns]

    @property
    def key(self) -> str:
        """Model-independent text of the prompt: the prompt itself, or the built-in rendering of the
        chat. What prompts are grouped, split and looked up by (never what a model is fed)."""
        return self.turns[0][1] if not self.chat else render_template(self.messages(), DEFAULT_CHAT_TEMPLATE)


def validate_messages(messages: Any, where: str = "chat") -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise InputError(f'{where}: a chat must be a non-empty list of {{"role", "content"}} messages')
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InputError(f'{where}: message {i} must be an object with string "role" and "content"')
        if not m["content"].strip():
            raise InputError(f"{where}: message {i} has empty content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


@functools.lru_cache(maxsize=8)
def _compile(template: str) -> Any:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"CHAT_TEMPLATE is not a valid Jinja template: {exc}") from None


def render_template(messages: list[Message], template: str = "") -> str:
    """A chat through a Jinja template over `messages` (CHAT_TEMPLATE, or the built-in one)."""
    return str(_compile(template or DEFAULT_CHAT_TEMPLATE).render(messages=messages))


# --- rendering and tokenizing -----------------------------------------------------------------------
def uses_native_template(tokenizer: Any, conv: Conversation, template: str = "") -> bool:
    """True when `conv` is rendered by the tokenizer's own chat template (no CHAT_TEMPLATE override)."""
    if template and conv.chat:
        return False
    return bool(getattr(tokenizer, "chat_template", None))


def generation_text(tokenizer: Any, conv: Conversation | str, template: str = "") -> str:
    """The text a causal LM continues to answer `conv`."""
    conv = Conversation.of(conv)
    if uses_native_template(tokenizer, conv, template):
        return str(tokenizer.apply_chat_template(conv.messages(), tokenize=False, add_generation_prompt=True))
    if not conv.chat:
        return conv.turns[0][1]
    return render_template(conv.messages(), template)


def scoring_text(tokenizer: Any, conv: Conversation | str, response: str, template: str = "") -> str:
    """The text a reward model scores: `conv` answered by `response`."""
    conv = Conversation.of(conv)
    if uses_native_template(tokenizer, conv, template):
        messages = conv.messages() + [{"role": "assistant", "content": response.strip()}]
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
    return generation_text(tokenizer, conv, template) + RESPONSE_SEPARATOR + response.strip()


def encode(tokenizer: Any, text: str, *, templated: bool) -> list[int]:
    """Token ids of a rendered text: the template's own special tokens, or the tokenizer's."""
    return list(tokenizer(text, add_special_tokens=not templated, verbose=False)["input_ids"])


def generation_ids(tokenizer: Any, conv: Conversation | str, template: str = "") -> list[int]:
    conv = Conversation.of(conv)
    templated = uses_native_template(tokenizer, conv, template)
    ids = encode(tokenizer, generation_text(tokenizer, conv, template), templated=templated)
    return ids or [eos_ids(tokenizer)[0]]


def scoring_ids(
    tokenizer: Any, conv: Conversation | str, response: str, template: str = "", max_length: int | None = None
) -> list[int]:
    """Token ids a reward model scores. Longer than `max_length`: the start is cut (the end of the
    answer is what gets scored), keeping a leading BOS/[CLS]."""
    conv = Conversation.of(conv)
    templated = uses_native_template(tokenizer, conv, template)
    ids = encode(tokenizer, scoring_text(tokenizer, conv, response, template), templated=templated)
    if max_length is not None and len(ids) > max_length:
        starts = {getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "cls_token_id", None)} - {None}
        head = ids[:1] if ids and ids[0] in starts else []
        ids = head + ids[len(ids) - (max_length - len(head)) :]
    return ids


def decode_answer(tokenizer: Any, ids: Iterable[int], stop: Sequence[int] | None = None) -> str:
    """An answer as stored: cut at the first end-of-turn id, special tokens dropped, stripped."""
    stop_set = set(stop if stop is not None else eos_ids(tokenizer))
    kept = []
    for i in ids:
        if int(i) in stop_set:
            break
        kept.append(int(i))
    return str(tokenizer.decode(kept, skip_special_tokens=True)).strip()


# --- ids and lengths ------------------------------------------------------------------------------
def _ints(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def eos_ids(tokenizer: Any, model: Any = None) -> tuple[int, ...]:
    """Every id that ends an answer: the tokenizer's EOS, then the config's and generation config's
    `eos_token_id` (an int or a list), in that order, without repeats."""
    found = _ints(getattr(tokenizer, "eos_token_id", None))
    if model is not None:
        found += _ints(getattr(model.config, "eos_token_id", None))
        gen = getattr(model, "generation_config", None)
        found += _ints(getattr(gen, "eos_token_id", None))
    out = tuple(dict.fromkeys(found))
    if not out:
        raise InputError("the model has no end-of-sequence token (tokenizer and config name none)")
    return out


def pad_id(tokenizer: Any) -> int:
    """The pad id: the tokenizer's pad token, else its (first) EOS. Always a single int."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else eos_ids(tokenizer)[0]


def context_length(model_config: Any, tokenizer: Any = None, default: int = 1024) -> int:
    """Longest sequence (prompt + response, in tokens) the model takes: GPT-2's `n_positions`,
    Llama/Qwen/BERT's `max_position_embeddings`, or the tokenizer's own limit when it is smaller."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(model_config, name, None)
        if isinstance(value, int) and value > 0:
            break
    else:
        value = default
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < value:
        value = limit
    return int(value)


# --- LoRA -----------------------------------------------------------------------------------------
_LORA_TARGETS: dict[str, list[str]] = {
    "gpt2": ["c_attn", "c_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "bert": ["query", "key", "value"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj"],
}


def lora_targets(model_type: str) -> list[str] | str:
    """Default LoRA target modules of a family (config.model_type); "all-linear" for others."""
    return list(_LORA_TARGETS.get(model_type, [])) or "all-linear"


@dataclass(frozen=True)
class LoraSettings:
    """LORA_R (0: off), LORA_ALPHA (0: 2 * r), LORA_DROPOUT, LORA_TARGET_MODULES (empty: per family)."""

    r: int = 0
    alpha: float = 0.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.r > 0

    @classmethod
    def from_settings(cls, settings: Any) -> LoraSettings:
        targets = tuple(t.strip() for t in str(settings.lora_target_modules).split(",") if t.strip())
        return cls(settings.lora_r, settings.lora_alpha, settings.lora_dropout, targets)


def lora_config(model_type: str, lora: LoraSettings, task: Literal["causal_lm", "seq_cls"]) -> Any:
    """The peft LoraConfig for a model of `model_type`, or None when LoRA is off."""
    if not lora.enabled:
        return None
    from peft import LoraConfig, TaskType

    targets: list[str] | str = list(lora.target_modules) or lora_targets(model_type)
    return LoraConfig(
        r=lora.r,
        lora_alpha=int(lora.alpha or 2 * lora.r),
        lora_dropout=lora.dropout,
        target_modules=targets,
        fan_in_fan_out=model_type == "gpt2",
        task_type=TaskType.CAUSAL_LM if task == "causal_lm" else TaskType.SEQ_CLS,
    )
