"""How a task becomes model text. Generation, reward training, scoring and PPO all call these
functions, so a prompt is rendered the same way everywhere.

A task is either a single prompt (`data[prompt_field]`, a string) or a chat (`data[chat_field]`, a
list of {"role", "content"} messages, shown by Label Studio's Paragraphs tag). GPT-2 has no chat
template of its own, so chats are rendered through CHAT_TEMPLATE (Jinja), by default
"User: ...\nAssistant: ...\n" ending with "Assistant:" so the model answers as the assistant.
"""

from __future__ import annotations

import functools
from typing import Any

from prefloop.errors import InputError
from prefloop.label_config import PairwiseConfig

DEFAULT_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m.role | capitalize }}: {{ m.content }}\n{% endfor %}Assistant:"
)
RESPONSE_SEPARATOR = " "
"""Joins a rendered prompt and a response for scoring; generation continues the prompt directly, and
answers are stored stripped, so a single space restores what the model saw."""


@functools.lru_cache(maxsize=8)
def _compile(template: str):
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(f"CHAT_TEMPLATE is not a valid Jinja template: {exc}") from None


def validate_messages(messages: Any, where: str = "chat") -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: a chat must be a non-empty list of {{\"role\", \"content\"}} messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InputError(f"{where}: message {i} must be an object with string \"role\" and \"content\"")
        if not m["content"].strip():
            raise InputError(f"{where}: message {i} has empty content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def render_chat(messages: list[dict[str, str]], template: str = "") -> str:
    return _compile(template or DEFAULT_CHAT_TEMPLATE).render(messages=messages)


def render_prompt(data: dict[str, Any], config: PairwiseConfig, template: str = "") -> str:
    """The model-facing prompt text of a task's data."""
    if config.chat_field and data.get(config.chat_field) not in (None, "", []):
        return render_chat(validate_messages(data[config.chat_field], f"task field {config.chat_field!r}"), template)
    if config.prompt_field:
        prompt = data.get(config.prompt_field)
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(f"task field {config.prompt_field!r} must be a non-empty string")
        return prompt
    raise InputError("the task has neither a prompt nor a chat")


def answers_of(data: dict[str, Any], config: PairwiseConfig) -> tuple[str, str] | None:
    """Both answers of a task, or None while either is missing."""
    a, b = (data.get(f) for f in config.answer_fields)
    if isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip():
        return a, b
    return None


def reward_text(prompt: str, response: str) -> str:
    """The text a reward model scores: the full (prompt, response)."""
    return prompt + RESPONSE_SEPARATOR + response.strip()
