"""How a task becomes a prompt. Generation, reward training, scoring and PPO all start here, so a
task's prompt is the same `Conversation` everywhere; `prefloop.family` renders it for each model.

A task is either a single prompt (`data[prompt_field]`, a string) or a chat (`data[chat_field]`, a
list of {"role", "content"} messages, shown by Label Studio's Paragraphs tag).
`task_conversation` gives the model-independent `Conversation`; `render_prompt` gives its
model-independent text (a single prompt as written, a chat through CHAT_TEMPLATE or the built-in
"User: ...\\nAssistant:" template), which is what comparisons are grouped by and exports show.
"""

from __future__ import annotations

from typing import Any

from prefloop.errors import InputError
from prefloop.family import DEFAULT_CHAT_TEMPLATE, RESPONSE_SEPARATOR, Conversation, render_template, validate_messages
from prefloop.label_config import LabelConfig, PairwiseConfig, RankingConfig, ranking_answers

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "RESPONSE_SEPARATOR",
    "Conversation",
    "answers_of",
    "render_chat",
    "render_prompt",
    "reward_text",
    "task_conversation",
    "validate_messages",
]


def render_chat(messages: list[dict[str, str]], template: str = "") -> str:
    """A chat's model-independent text: CHAT_TEMPLATE, or the built-in template."""
    return render_template(messages, template)


def task_conversation(data: dict[str, Any], config: LabelConfig) -> Conversation:
    """The prompt of a task's data: its chat when it has one, else its single prompt."""
    if config.chat_field and data.get(config.chat_field) not in (None, "", []):
        return Conversation.of(validate_messages(data[config.chat_field], f"task field {config.chat_field!r}"))
    if config.prompt_field:
        prompt = data.get(config.prompt_field)
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"task field {config.prompt_field!r} must be a non-empty string")
        return Conversation.of(prompt)
    raise InputError("the task has neither a prompt nor a chat")


def render_prompt(data: dict[str, Any], config: LabelConfig, template: str = "") -> str:
    """The model-independent prompt text of a task's data (never what a model with a chat
    template is fed: `prefloop.family` renders for each model)."""
    conv = task_conversation(data, config)
    return render_chat(conv.messages(), template) if conv.chat else conv.key


def answers_of(data: dict[str, Any], config: PairwiseConfig) -> tuple[str, str] | None:
    """Both answers of a task, or None while either is missing."""
    a, b = (data.get(f) for f in config.answer_fields)
    if isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip():
        return a, b
    return None


def task_answers(data: dict[str, Any], config: LabelConfig) -> tuple[str, ...] | None:
    """The answers a task shows, in order: both of a pair, or a ranking's List (at least two); None
    while they are missing."""
    if isinstance(config, RankingConfig):
        shown = ranking_answers(data, config)
        return tuple(shown) if shown is not None else None
    return answers_of(data, config)


def has_answers(data: dict[str, Any], config: LabelConfig) -> bool:
    return task_answers(data, config) is not None


def reward_text(prompt: str, response: str) -> str:
    """A (rendered prompt, response) joined as for a model without a chat template (GPT-2)."""
    return prompt + RESPONSE_SEPARATOR + response.strip()
