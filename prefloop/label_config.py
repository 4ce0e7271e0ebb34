"""Reading a project's labeling config: which Pairwise (or Ranker) tag to answer with and which task
fields hold the prompt and the answers. The tag name comes from the config, never a constant."""

from __future__ import annotations

import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from prefloop.errors import LabelConfigError

_OBJECT_TAGS = {"Text", "HyperText", "Paragraphs"}


@dataclass(frozen=True)
class PairwiseConfig:
    from_name: str  # the Pairwise tag's name, e.g. "pw"
    to_names: tuple[str, str]  # the two object tags it compares, e.g. ("answer1", "answer2")
    answer_fields: tuple[str, str]  # task.data keys shown by those objects, e.g. ("answer1", "answer2")
    prompt_field: str | None  # task.data key of the prompt (a Text), if any
    chat_field: str | None  # task.data key of the dialogue (a Paragraphs), if any

    @property
    def data_fields(self) -> tuple[str, ...]:
        return tuple(f for f in (self.prompt_field, self.chat_field, *self.answer_fields) if f)


def parse_pairwise_config(xml: str) -> PairwiseConfig:
    """Find the Pairwise tag and the data fields around it, or raise LabelConfigError saying what is missing."""
    if not isinstance(xml, str) or not xml.strip():
        raise LabelConfigError("the label config is empty")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelConfigError(f"the label config is not valid XML: {exc}") from None
    pairwise = [el for el in root.iter() if el.tag == "Pairwise"]
    if not pairwise:
        raise LabelConfigError(
            "the label config has no <Pairwise> tag; use label_config/pairwise.xml or label_config/pairwise_chat.xml"
        )
    if len(pairwise) > 1:
        raise LabelConfigError("the label config has several <Pairwise> tags; prefloop supports exactly one")
    tag = pairwise[0]
    name = tag.get("name")
    to_names = [n.strip() for n in (tag.get("toName") or "").split(",") if n.strip()]
    if not name or len(to_names) != 2:
        raise LabelConfigError(
            '<Pairwise> needs a name and toName naming exactly two objects, like toName="answer1,answer2"'
        )
    objects = {el.get("name"): el for el in root.iter() if el.tag in _OBJECT_TAGS and el.get("name")}
    answer_fields = []
    for to_name in to_names:
        el = objects.get(to_name)
        if el is None:
            raise LabelConfigError(f"<Pairwise toName> names {to_name!r}, but no <Text> object has that name")
        answer_fields.append(_data_key(el))
    prompt_field = chat_field = None
    for el_name, el in objects.items():
        if el_name in to_names:
            continue
        if el.tag == "Paragraphs" and chat_field is None:
            chat_field = _data_key(el)
        elif el.tag in ("Text", "HyperText") and prompt_field is None:
            prompt_field = _data_key(el)
    if prompt_field is None and chat_field is None:
        raise LabelConfigError(
            'the label config shows no prompt: add a <Text value="$prompt"/> '
            '(or a <Paragraphs value="$messages"/> for chats) besides the two answers'
        )
    return PairwiseConfig(
        name, (to_names[0], to_names[1]), (answer_fields[0], answer_fields[1]), prompt_field, chat_field
    )


@dataclass(frozen=True)
class RankingConfig:
    """A ranking of K answers (label_config/ranking.xml): Label Studio's <List> shows them, its
    <Ranker> lets the annotator drag them into order; prefloop/ranking.py turns each ranking into the
    K(K-1)/2 pairs it implies."""

    from_name: str  # the Ranker tag's name, e.g. "rank"
    list_name: str  # the List tag it orders, e.g. "answers"
    list_field: str  # task.data key of the items ([{"id", "title", "body"}, ...])
    prompt_field: str | None
    chat_field: str | None

    @property
    def data_fields(self) -> tuple[str, ...]:
        return tuple(f for f in (self.prompt_field, self.chat_field, self.list_field) if f)


LabelConfig = PairwiseConfig | RankingConfig


def ranking_answers(data: dict[str, Any], config: RankingConfig) -> list[str] | None:
    """The answers a ranking task shows, in the List's order, or None while there are fewer than two
    non-empty ones."""
    items = data.get(config.list_field)
    if not isinstance(items, list):
        return None
    bodies = [item.get("body") for item in items if isinstance(item, dict)]
    if len(bodies) < 2 or len(bodies) != len(items) or not all(isinstance(b, str) and b.strip() for b in bodies):
        return None
    return [str(b) for b in bodies]


def ranking_ids(data: dict[str, Any], config: RankingConfig) -> list[str]:
    """The item ids of a ranking task's List, in its order (what a Ranker result names)."""
    return [str(item.get("id")) for item in data[config.list_field]]


def ranking_items(answers: list[str]) -> list[dict[str, str]]:
    """The List items prefloop writes: ids answer1..answerK, shown as "Answer k" with the text."""
    return [{"id": f"answer{k}", "title": f"Answer {k}", "body": text} for k, text in enumerate(answers, 1)]


def answers_wanted(config: LabelConfig, answers_per_prompt: int) -> int:
    """How many answers a task of this project gets: two for a pair, ANSWERS_PER_PROMPT for a ranking."""
    return answers_per_prompt if isinstance(config, RankingConfig) else 2


def with_answers(data: dict[str, Any], config: LabelConfig, answers: Sequence[str]) -> dict[str, Any]:
    """The task data with the answers written where the project's interface shows them: the two answer
    fields of a pair, or the List items of a ranking. The one place that knows both layouts."""
    out = dict(data)
    if isinstance(config, RankingConfig):
        out[config.list_field] = ranking_items(list(answers))
    else:
        out.update(zip(config.answer_fields, answers, strict=True))
    return out


def answer_slots(config: LabelConfig) -> dict[str, Any]:
    """Empty answer fields for a prompt-only task (Label Studio's import check wants every field the
    interface reads): "" for each answer of a pair, [] for a ranking's List; the worker fills them."""
    if isinstance(config, RankingConfig):
        return {config.list_field: []}
    return {f: "" for f in config.answer_fields}


def parse_label_config(xml: str) -> LabelConfig:
    """A Pairwise config, or else a List + Ranker ranking config; LabelConfigError names what is missing."""
    try:
        return parse_pairwise_config(xml)
    except LabelConfigError as pairwise_error:
        if "<Ranker" not in (xml or ""):
            raise pairwise_error from None
    return parse_ranking_config(xml)


def parse_ranking_config(xml: str) -> RankingConfig:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelConfigError(f"the label config is not valid XML: {exc}") from None
    rankers = [el for el in root.iter() if el.tag == "Ranker"]
    if len(rankers) != 1 or not rankers[0].get("name") or not rankers[0].get("toName"):
        raise LabelConfigError(
            "a ranking config needs exactly one <Ranker name=... toName=...> (label_config/ranking.xml)"
        )
    ranker = rankers[0]
    lists = {el.get("name"): el for el in root.iter() if el.tag == "List" and el.get("name")}
    target = lists.get((ranker.get("toName") or "").strip())
    if target is None:
        raise LabelConfigError(f"<Ranker toName> names {ranker.get('toName')!r}, but no <List> object has that name")
    prompt_field = chat_field = None
    for el in root.iter():
        if el.tag == "Paragraphs" and el.get("name") and chat_field is None:
            chat_field = _data_key(el)
        elif el.tag in ("Text", "HyperText") and el.get("name") and prompt_field is None:
            prompt_field = _data_key(el)
    if prompt_field is None and chat_field is None:
        raise LabelConfigError('the ranking config shows no prompt: add a <Text value="$prompt"/> besides the <List>')
    return RankingConfig(str(ranker.get("name")), str(target.get("name")), _data_key(target), prompt_field, chat_field)


def _data_key(el: ET.Element) -> str:
    value = el.get("value") or ""
    if not value.startswith("$") or len(value) < 2:
        raise LabelConfigError(
            f'<{el.tag} name={el.get("name")!r}> must take its value from task data, like value="$answer1"'
        )
    return value[1:]


@functools.lru_cache(maxsize=8)
def load_label_config(name: str = "pairwise") -> str:
    """The XML of a shipped labeling interface (label_config/<name>.xml): the single source of truth."""
    shipped = resources.files("label_config")
    path = shipped / f"{name}.xml"
    if not re.fullmatch(r"[a-z0-9_]+", name) or not path.is_file():
        known = sorted(p.name[:-4] for p in shipped.iterdir() if p.name.endswith(".xml"))
        raise LabelConfigError(f"no label config named {name!r}; shipped: {', '.join(known)}")
    return path.read_text(encoding="utf-8")
