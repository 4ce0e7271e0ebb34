"""Rankings of K answers -> preference pairs, as InstructGPT did: a ranking a1 > a2 > ... > aK
implies the K(K-1)/2 pairs (ai preferred over aj for every i < j).

Label Studio 1.23.2's <Ranker> (label_config/ranking.xml, no buckets) saves
`{"type": "ranker", "from_name": "rank", "to_name": "answers", "value": {"ranker": {"rank": ["answer3",
"answer1", "answer2"]}}}`: the List item ids, best first, under the Ranker's own name (seen in the
browser test; with <Bucket>s the keys are the bucket names, and a single bucket holding every item
is read the same way). An annotation whose ranking does not hold each item exactly once is dropped
(`incomplete_ranking`). The pairs then go through the same majority vote as pairwise choices
(prefloop/preferences.py): one comparison per prompt and unordered pair of answers, one vote per
annotator, latest annotation wins, ties dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prefloop.errors import InputError
from prefloop.label_config import RankingConfig, ranking_answers, ranking_ids
from prefloop.preferences import ConversionSummary, PreferencePair, _annotator, _Comparison, _decide, _Vote
from prefloop.text import render_prompt, task_conversation


def ranking_of(
    annotation: Mapping[str, Any], config: RankingConfig, ids: list[str]
) -> tuple[list[str] | None, str | None]:
    """(item ids best first, None) for a usable annotation, or (None, drop reason)."""
    if annotation.get("was_cancelled"):
        return None, "skipped"
    result = annotation.get("result") or []
    if not result:
        return None, "empty_result"
    orders = []
    for region in result:
        if not isinstance(region, Mapping) or region.get("type") != "ranker":
            continue
        if region.get("from_name") != config.from_name:
            continue
        value = region.get("value") or {}
        columns = value.get("ranker") if isinstance(value, Mapping) else None
        if isinstance(columns, Mapping):
            orders += [list(col) for col in columns.values() if isinstance(col, list) and col]
    if not orders:
        return None, "no_ranking_result"
    full = [order for order in orders if sorted(map(str, order)) == sorted(ids)]
    if len(full) != 1:
        return None, "incomplete_ranking"
    return [str(i) for i in full[0]], None


def rankings_to_pairs(
    tasks: Iterable[Mapping[str, Any]], config: RankingConfig, chat_template: str = ""
) -> tuple[list[PreferencePair], ConversionSummary]:
    summary = ConversionSummary()
    comparisons: dict[tuple[str, ...], _Comparison] = {}
    for task in tasks:
        annotations = summary.count_task(task)
        if not annotations:
            continue
        data = dict(task.get("data") or {})
        answers = ranking_answers(data, config)
        if answers is None:
            summary.dropped["missing_answers"] += 1
            continue
        try:
            prompt = render_prompt(data, config, chat_template)
            conversation = task_conversation(data, config)
        except InputError:
            summary.dropped["bad_prompt"] += 1
            continue
        ids = ranking_ids(data, config)
        text = dict(zip(ids, (a.strip() for a in answers), strict=True))
        for ann in annotations:
            order, reason = ranking_of(ann, config, ids)
            if order is None:
                assert reason is not None
                summary.dropped[reason] += 1
                continue
            stamp = (str(ann.get("updated_at") or ann.get("created_at") or ""), int(ann.get("id") or 0))
            for i, better in enumerate(order):
                for worse in order[i + 1 :]:
                    if text[better] == text[worse]:
                        continue  # identical texts imply no preference
                    key = (prompt, *sorted((text[better], text[worse])))
                    comparison = comparisons.get(key)
                    if comparison is None:
                        comparison = comparisons[key] = _Comparison(
                            prompt, (text[better], text[worse]), task.get("id"), conversation
                        )
                    vote = _Vote(ann.get("id"), _annotator(ann), text[better], stamp)
                    previous = comparison.votes.get(vote.annotator)
                    if previous is None or previous.order <= vote.order:
                        comparison.votes[vote.annotator] = vote
    pairs = [p for p in (_decide(c, summary) for c in comparisons.values()) if p is not None]
    summary.pairs = len(pairs)
    return pairs, summary
