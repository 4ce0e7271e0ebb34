"""POST /reward: the served reward model for other tools (a training run elsewhere, an evaluation
script). Basic auth applies like on every route Label Studio calls with credentials.

Request:  {"project": 7, "version": "rm-..." (optional, default: the serving version),
           "items": [{"prompt": "...", "response": "..."}
                     | {"messages": [{"role", "content"}, ...], "response": "..."}]}
Response: {"project_id": 7, "version": "rm-...", "rewards": [float, ...]}  (one per item, in order)

A prompt is a single prompt as a task holds it; a chat (`messages`) is a conversation. Either is
rendered with the answer by the reward model's own tokenizer exactly as tasks are (its chat
template, CHAT_TEMPLATE, or the built-in format: prefloop/family.py), and scored as prefloop
scores it everywhere (prefloop/scoring.py).

Caps, each named in its error: at most MAX_ITEMS items per request (400), MAX_TEXT_CHARS characters
per prompt, message or response (413), and PREDICT_TIME_BUDGET seconds of scoring, tokenization
included (413 when the budget runs out: send fewer or shorter items).
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, jsonify

from backend.context import context
from backend.predict import reward_scorer
from backend.requests import allowed_project, json_body, require
from prefloop.artifacts import valid_version_name
from prefloop.errors import BadRequest, InputError, ModelNotFound, TooLarge
from prefloop.text import Conversation, validate_messages

bp = Blueprint("reward_api", __name__)
MAX_ITEMS = 1_000


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/reward")
def reward() -> Response:
    ctx = context()
    body = json_body()
    project_id = allowed_project(require(body, "project", (str, int)))
    version = body.get("version")
    if version is not None and not isinstance(version, str):
        raise BadRequest("body['version'] must be a reward-model version string like 'rm-20261127T061502123456'")
    if version is not None and not valid_version_name(version, "reward"):
        raise ModelNotFound(
            f"reward version {version[:40]!r}{'...' if len(version) > 40 else ''} does not exist for "
            f"project {project_id} (a reward version is named rm-<timestamp>)"
        )
    items = require(body, "items", list)
    if not items:
        raise BadRequest('body[\'items\'] is empty: send at least one {"prompt", "response"}')
    if len(items) > MAX_ITEMS:
        raise BadRequest(f"body['items'] has {len(items)} entries; send at most {MAX_ITEMS} per request")
    prompts, responses = [], []
    cap = ctx.settings.max_text_chars
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"items[{i}] must be an object with 'prompt' (or 'messages') and 'response'")
        response = require(item, "response", str, f"items[{i}]")
        _check_length(response, f"items[{i}].response", cap)
        if "messages" in item:
            for j, message in enumerate(item["messages"] if isinstance(item["messages"], list) else []):
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    _check_length(message["content"], f"items[{i}].messages[{j}].content", cap)
            try:
                prompt = Conversation.of(validate_messages(item["messages"], f"items[{i}].messages"))
            except InputError as exc:
                raise BadRequest(str(exc)) from None
            _check_length(prompt.key, f"items[{i}].messages (rendered)", cap)
        else:
            text = require(item, "prompt", str, f"items[{i}]")
            _check_length(text, f"items[{i}].prompt", cap)
            if not text.strip():
                raise BadRequest(f"items[{i}].prompt is empty")
            prompt = Conversation.of(text)
        prompts.append(prompt)  # rendered by the reward model's own tokenizer (prefloop.family)
        responses.append(response)
    budget = ctx.settings.predict_time_budget
    deadline = time.monotonic() + budget  # model loading and tokenization count too
    scorer = reward_scorer(ctx, project_id, version)
    started = time.perf_counter()
    rewards = scorer.score(prompts, responses, deadline=deadline)
    if any(r is None for r in rewards):
        done = sum(r is not None for r in rewards)
        raise TooLarge(
            f"scored {done} of {len(items)} items within PREDICT_TIME_BUDGET={budget:g}s: send fewer or "
            "shorter items per request"
        )
    return jsonify(
        project_id=project_id, version=scorer.version, rewards=rewards, seconds=round(time.perf_counter() - started, 3)
    )


def _check_length(text: str, where: str, cap: int) -> None:
    if len(text) > cap:
        raise TooLarge(
            f"{where} has {len(text)} characters, more than MAX_TEXT_CHARS={cap}: shorten it (the reward "
            "model reads at most its context length anyway)"
        )
