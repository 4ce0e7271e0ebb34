"""POST /reward: the served reward model for other tools (a training run elsewhere, an evaluation
script). Basic auth applies like on every route Label Studio calls with credentials.

Request:  {"project": 7, "version": "rm-..." (optional, default: the serving version),
           "items": [{"prompt": "...", "response": "..."} | {"messages": [{"role", "content"}, ...], "response": "..."}]}
Response: {"project_id": 7, "version": "rm-...", "rewards": [float, ...]}  (one per item, in order)

A prompt is the model-facing text; a chat (`messages`) is rendered with CHAT_TEMPLATE exactly as
tasks are, and the pair is scored as prefloop scores it everywhere (prefloop/scoring.py).
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, jsonify

from backend.context import context
from backend.predict import reward_scorer
from backend.requests import allowed_project, json_body, require
from prefloop.errors import BadRequest, InputError
from prefloop.text import render_chat, validate_messages

bp = Blueprint("reward_api", __name__)
MAX_ITEMS = 10_000


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/reward")
def reward():
    ctx = context()
    body = json_body()
    project_id = allowed_project(require(body, "project", (str, int)))
    version = body.get("version")
    if version is not None and not isinstance(version, str):
        raise BadRequest("body['version'] must be a reward-model version string like 'rm-20261127T061502123456'")
    items = require(body, "items", list)
    if not items:
        raise BadRequest("body['items'] is empty: send at least one {\"prompt\", \"response\"}")
    if len(items) > MAX_ITEMS:
        raise BadRequest(f"body['items'] has {len(items)} entries; send at most {MAX_ITEMS} per request")
    prompts, responses = [], []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"items[{i}] must be an object with 'prompt' (or 'messages') and 'response'")
        response = require(item, "response", str, f"items[{i}]")
        if "messages" in item:
            try:
                prompt = render_chat(validate_messages(item["messages"], f"items[{i}].messages"), ctx.settings.chat_template)
            except InputError as exc:
                raise BadRequest(str(exc)) from None
        else:
            prompt = require(item, "prompt", str, f"items[{i}]")
        prompts.append(prompt)
        responses.append(response)
    scorer = reward_scorer(ctx, project_id, version)
    started = time.perf_counter()
    rewards = scorer.score(prompts, responses)
    return jsonify(project_id=project_id, version=scorer.version, rewards=rewards,
                   seconds=round(time.perf_counter() - started, 3))
