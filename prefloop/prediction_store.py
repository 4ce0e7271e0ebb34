"""The reward model's pick for each task, computed on the worker and shared with the web tier.

The worker scores tasks (after a reward model is published, after a policy is published, after
each generation chunk, and when /predict meets a task nobody scored yet) and writes the picks into
Label Studio as predictions (worker/predictions.py). The same picks are kept here, in Redis, so
/predict answers from them without loading a model, and a new policy version (which changes the
`model_version` label but not the reward model) re-labels predictions without scoring again.

Redis keys (under QUEUE_PREFIX):
  {prefix}:picks:{project}:{reward version}   hash: comparison key -> "left 0.8123" / "right 0.6402"
                                              (a ranking: "answer3,answer1,answer2 0.5731")

A comparison key identifies the rendered prompt and the answers in order (`comparison_key`), so an
edited prompt or regenerated answers are a new comparison, never a stale hit.

Ranking projects (label_config/ranking.xml) get the model's order of the K answers, best first, as
a Ranker region; its score is the model's confidence in the least certain step of that order (the
Bradley-Terry probability of the closest adjacent pair), so for K = 2 it is exactly a pair's score
and ordering by it puts the rankings the model is least sure of first.

What Label Studio 1.23.2 needs from a prediction (checked against its source and UI):
- `model_version` equal to the project's `model_version` (with the model-version dropdown flag
  off, the default) for the Data Manager's "Prediction score" column and for ordering by it, and
  for "Uncertainty sampling" in the labeling stream; the project setting only accepts a version
  that already exists as a prediction or a backend title, so predictions are written first.
- Bulk import (`POST /api/projects/<id>/import/predictions`) validates each region's `to_name`
  against the config's object tags: a Pairwise region must name the first compared object
  (e.g. "answer1"), not the tag's own name, or it is dropped with only a server-side log line. The
  labeling UI pre-selects the pick either way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from prefloop.errors import InputError
from prefloop.label_config import LabelConfig, PairwiseConfig, RankingConfig
from prefloop.text import Conversation, render_prompt, task_answers, task_conversation

Pick = tuple[str, float]
"""(selection, confidence in [0.5, 1]). The selection is "left" | "right" for a pair (the confidence:
the probability of that pick), or the ranking's List item ids best first, comma-joined
("answer3,answer1,answer2" for the ids prefloop writes; the confidence: that of its least certain
adjacent step)."""

_SERVING_VERSION = re.compile(r"rm-[^+\s]+\+pi-[^+\s]+")
_RANKING = re.compile(r"[^,]+(,[^,]+)+")


def comparison_key(prompt: str, *answers: str) -> str:
    """Identifies a task's comparison (rendered prompt and the answers as stored, in order)."""
    return hashlib.sha256(json.dumps([prompt, *answers], ensure_ascii=False).encode()).hexdigest()[:32]


def task_comparison(
    data: Mapping[str, Any], config: LabelConfig, chat_template: str = ""
) -> tuple[str, Conversation, tuple[str, ...]] | None:
    """(key, prompt, answers) of a task that has its answers (both of a pair, at least two of a
    ranking, in the order shown) and a usable prompt, else None. The key holds the model-independent
    prompt text; the prompt is the Conversation a scorer renders."""
    answers = task_answers(dict(data), config)
    if answers is None:
        return None
    try:
        prompt = render_prompt(dict(data), config, chat_template)
        conversation = task_conversation(dict(data), config)
    except InputError:
        return None
    return comparison_key(prompt, *answers), conversation, answers


def too_long(data: Mapping[str, Any], config: LabelConfig, limit: int) -> bool:
    """Whether a prompt, a chat message or an answer of the task (a ranking's List items too) is
    longer than `limit` characters (MAX_TEXT_CHARS): such a task is neither scored nor looked up."""
    for name in config.data_fields:
        value = data.get(name)
        if isinstance(value, str) and len(value) > limit:
            return True
        if isinstance(value, list) and any(
            isinstance(m, Mapping) and len(str(m.get("content", m.get("body", "")))) > limit for m in value
        ):
            return True
    return False


def ranking_selection(order: Sequence[int], ids: Sequence[str]) -> str:
    """The selection of a ranking Pick: the List item `ids` in `order` (answer indices, best first)."""
    return ",".join(ids[i] for i in order)


def prediction_result(config: LabelConfig, selection: str) -> list[dict[str, Any]]:
    """The prediction region for a Pick's selection, in the shape Label Studio's routes accept (see
    the module doc): a Pairwise choice, or a Ranker order of the List's item ids."""
    if isinstance(config, RankingConfig):
        return [
            {
                "from_name": config.from_name,
                "to_name": config.list_name,
                "type": "ranker",
                "value": {"ranker": {config.from_name: selection.split(",")}},
            }
        ]
    return pairwise_result(config, selection)


def pairwise_result(config: PairwiseConfig, selected: str) -> list[dict[str, Any]]:
    """A Pairwise prediction region in the shape both Label Studio routes accept (see the module doc)."""
    return [
        {
            "from_name": config.from_name,
            "to_name": config.to_names[0],
            "type": "pairwise",
            "value": {"selected": selected},
        }
    ]


def is_serving_version(model_version: str) -> bool:
    """Whether a prediction's model_version is one prefloop writes ("rm-...+pi-...")."""
    return bool(_SERVING_VERSION.fullmatch(model_version or ""))


class PickStore:
    """Picks by project and reward version, in Redis. Cheap to build; one HMGET per /predict."""

    def __init__(self, connection: redis.Redis, prefix: str):
        self.connection = connection
        self.prefix = prefix

    def key(self, project_id: int, reward_version: str) -> str:
        return f"{self.prefix}:picks:{int(project_id)}:{reward_version}"

    def get_many(self, project_id: int, reward_version: str, keys: Sequence[str]) -> list[Pick | None]:
        if not keys:
            return []
        raw = self.connection.hmget(self.key(project_id, reward_version), list(keys))
        return [_decode(value) for value in raw]

    def put_many(self, project_id: int, reward_version: str, picks: Mapping[str, Pick]) -> None:
        if picks:
            mapping = {k: f"{selected} {prob:.6f}" for k, (selected, prob) in picks.items()}
            self.connection.hset(self.key(project_id, reward_version), mapping=mapping)  # type: ignore[arg-type]

    def count(self, project_id: int, reward_version: str) -> int:
        return int(self.connection.hlen(self.key(project_id, reward_version)))

    def drop_other_versions(self, project_id: int, keep: str) -> int:
        """Forget the picks of every other reward version of the project; returns how many were dropped."""
        keep_key = self.key(project_id, keep)
        stale = [
            k
            for k in self.connection.scan_iter(match=f"{self.prefix}:picks:{int(project_id)}:*", count=100)
            if (k.decode() if isinstance(k, bytes) else k) != keep_key
        ]
        return int(self.connection.delete(*stale)) if stale else 0


def _decode(value: Any) -> Pick | None:
    if value is None:
        return None
    selected, _, prob = (value.decode() if isinstance(value, bytes) else str(value)).rpartition(" ")
    try:
        return (selected, float(prob)) if selected in ("left", "right") or _RANKING.fullmatch(selected) else None
    except ValueError:
        return None
