"""Label Studio annotations -> preference pairs (prompt, chosen, rejected).

Input: tasks as Label Studio's API returns them (`LabelStudioClient.iter_tasks(project, fields="all")`,
each with its current `annotations`), or as its JSON export writes them. Reading Label Studio's
current state is what makes updated and deleted annotations right: an update changes the
annotation's `result` in place, a deletion removes it from the task.

Rules (each dropped annotation or task is counted under a reason in `ConversionSummary.dropped`):
- A Pairwise result is found by `type == "pairwise"` and `from_name` (the tag's name from the
  label config); `to_name` is the tag's own name (what the UI saves) or "answer1,answer2" (what API
  clients may write). `value.selected == "left"` chooses the first toName object's answer.
- Skipped annotations (`was_cancelled`), empty results and results without a valid selection
  carry no preference.
- Tasks showing the same prompt and the same two answers (in either order) are one comparison:
  their annotations are pooled (`duplicate_task`). One annotator counts once per comparison: their
  latest annotation wins (`superseded`).
- Several annotators: the majority choice wins; an even split is dropped (`tie`). The agreement
  rate (the chance that two annotators of one comparison chose alike) is the ceiling for a
  reward model's accuracy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefloop.errors import InputError
from prefloop.label_config import PairwiseConfig, RankingConfig
from prefloop.text import RESPONSE_SEPARATOR, Conversation, answers_of, render_prompt, task_conversation

SELECTIONS = ("left", "right")


@dataclass(frozen=True)
class PreferencePair:
    prompt: str  # model-facing prompt text (chats rendered through text.render_prompt)
    chosen: str  # the preferred answer, as stored in the task
    rejected: str
    task_id: int | None  # first task showing this comparison
    annotation_ids: tuple[int, ...] = ()  # annotations whose votes were counted (majority and minority)
    votes: tuple[int, int] = (1, 0)  # (for chosen, for rejected)
    conversation: Conversation | None = field(default=None, compare=False)  # the prompt as turns, rendered per model

    @property
    def conv(self) -> Conversation:
        """The prompt as a Conversation (what `prefloop.family` renders for each model)."""
        return self.conversation or Conversation.of(self.prompt)

    def trl_record(self) -> dict[str, str]:
        """TRL's explicit-prompt preference format: `prompt + chosen` is exactly the text prefloop
        scores (`text.reward_text`)."""
        return {
            "prompt": self.prompt,
            "chosen": RESPONSE_SEPARATOR + self.chosen.strip(),
            "rejected": RESPONSE_SEPARATOR + self.rejected.strip(),
        }


@dataclass
class ConversionSummary:
    tasks: int = 0
    annotations: int = 0
    pairs: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> how many annotations or tasks
    comparisons_multi: int = 0  # comparisons with votes from two or more annotators
    agreeing_vote_pairs: int = 0
    vote_pairs: int = 0
    seen: dict[str, str] = field(default_factory=dict)  # annotation id -> updated_at, to count changes
    # per comparison: (prompt, answer a, answer b, {annotator: chosen answer}, Conversation or None),
    # for prefloop.annotators
    votes: list[tuple[str, str, str, dict[str, str], Any]] = field(default_factory=list)

    def count_task(self, task: Mapping[str, Any]) -> list[Any]:
        """Count a task and its annotations (and remember each annotation's id and update time);
        returns the annotations, none for an unannotated task (counted as dropped)."""
        self.tasks += 1
        annotations = list(task.get("annotations") or [])
        self.annotations += len(annotations)
        for ann in annotations:
            if ann.get("id") is not None:
                self.seen[str(ann["id"])] = str(ann.get("updated_at") or ann.get("created_at") or "")
        if not annotations:
            self.dropped["not_annotated"] += 1
        return annotations

    @property
    def agreement(self) -> float | None:
        """P(two annotators of one comparison agree); None when no comparison has two annotators."""
        return self.agreeing_vote_pairs / self.vote_pairs if self.vote_pairs else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "annotations": self.annotations,
            "pairs": self.pairs,
            "dropped": dict(sorted(self.dropped.items())),
            "comparisons_multi_annotated": self.comparisons_multi,
            "annotator_agreement": self.agreement,
        }

    def describe(self) -> str:
        lines = [f"{self.pairs} preference pairs from {self.annotations} annotations on {self.tasks} tasks"]
        for reason, count in sorted(self.dropped.items()):
            lines.append(f"  dropped {count:>5}  {reason}: {DROP_REASONS.get(reason, reason)}")
        if self.agreement is None:
            lines.append("  annotator agreement: n/a (no comparison has two annotators)")
        else:
            lines.append(
                f"  annotator agreement: {self.agreement:.3f} over {self.comparisons_multi} comparisons "
                "with several annotators (the ceiling for reward-model accuracy)"
            )
        return "\n".join(lines)


DROP_REASONS = {
    "skipped": "annotation was skipped (was_cancelled)",
    "empty_result": "annotation has an empty result (the choice was removed)",
    "no_pairwise_result": "annotation has no Pairwise result for this project's tag",
    "bad_selection": "Pairwise value.selected is neither 'left' nor 'right'",
    "conflicting_results": "annotation holds several Pairwise results that disagree",
    "superseded": "an older annotation by the same annotator on the same comparison",
    "tie": "annotators split evenly on a comparison (task count)",
    "missing_answers": "task lacks one of its two answers (task count)",
    "identical_answers": "both answers are the same text, so no preference (task count)",
    "bad_prompt": "task prompt or chat cannot be rendered (task count)",
    "duplicate_task": "task shows a comparison already seen in another task; votes pooled (task count)",
    "not_annotated": "task has no annotation yet (task count)",
    "no_ranking_result": "annotation has no Ranker result for this project's tag",
    "incomplete_ranking": "Ranker result does not order every answer of the task exactly once",
}


@dataclass
class _Vote:
    annotation_id: int | None
    annotator: Any
    chosen_text: str
    order: tuple[str, int]  # (updated_at or created_at, id): the latest wins


@dataclass
class _Comparison:
    prompt: str
    answers: tuple[str, str]
    task_id: int | None
    conversation: Conversation | None = None
    votes: dict[Any, _Vote] = field(default_factory=dict)  # annotator -> latest vote


def selection_of(annotation: Mapping[str, Any], config: PairwiseConfig) -> tuple[str | None, str | None]:
    """("left"|"right", None) for a usable annotation, or (None, drop reason)."""
    if annotation.get("was_cancelled"):
        return None, "skipped"
    result = annotation.get("result") or []
    if not result:
        return None, "empty_result"
    accepted_to = {config.from_name, ",".join(config.to_names)}
    picks = set()
    for region in result:
        if (
            not isinstance(region, Mapping)
            or region.get("type") != "pairwise"
            or region.get("from_name") != config.from_name
        ):
            continue
        to_name = str(region.get("to_name", config.from_name)).replace(" ", "")
        if to_name not in accepted_to:
            continue
        value = region.get("value") or {}
        picks.add(value.get("selected") if isinstance(value, Mapping) else None)
    if not picks:
        return None, "no_pairwise_result"
    if len(picks) > 1:
        return None, "conflicting_results" if picks <= set(SELECTIONS) else "bad_selection"
    pick = picks.pop()
    if pick not in SELECTIONS:
        return None, "bad_selection"
    return pick, None


def _annotator(annotation: Mapping[str, Any]) -> Any:
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):  # JSON exports may inline the user
        who = who.get("id") or who.get("email")
    return who if who is not None else ("annotation", annotation.get("id"))


def tasks_to_pairs(
    tasks: Iterable[Mapping[str, Any]], config: PairwiseConfig | RankingConfig, chat_template: str = ""
) -> tuple[list[PreferencePair], ConversionSummary]:
    """Convert tasks with their current annotations into majority-vote preference pairs (rankings of
    a RankingConfig project: each into the pairs it implies, prefloop/ranking.py)."""
    if isinstance(config, RankingConfig):
        from prefloop.ranking import rankings_to_pairs

        return rankings_to_pairs(tasks, config, chat_template)
    summary = ConversionSummary()
    comparisons: dict[tuple[str, ...], _Comparison] = {}  # (prompt, *sorted answers)
    for task in tasks:
        annotations = summary.count_task(task)
        if not annotations:
            continue
        data = task.get("data") or {}
        answers = answers_of(data, config)
        if answers is None:
            summary.dropped["missing_answers"] += 1
            continue
        if answers[0].strip() == answers[1].strip():
            summary.dropped["identical_answers"] += 1
            continue
        try:
            prompt = render_prompt(data, config, chat_template)
            conversation = task_conversation(data, config)
        except InputError:
            summary.dropped["bad_prompt"] += 1
            continue
        key = (prompt, *sorted(a.strip() for a in answers))
        comparison = comparisons.get(key)
        if comparison is None:
            comparison = comparisons[key] = _Comparison(prompt, answers, task.get("id"), conversation)
        else:
            summary.dropped["duplicate_task"] += 1
        _add_votes(comparison, annotations, answers, config, summary)
    pairs = [p for p in (_decide(c, summary) for c in comparisons.values()) if p is not None]
    summary.pairs = len(pairs)
    return pairs, summary


def _add_votes(
    comparison: _Comparison,
    annotations: list[Mapping[str, Any]],
    answers: tuple[str, str],
    config: PairwiseConfig,
    summary: ConversionSummary,
) -> None:
    for ann in annotations:
        pick, reason = selection_of(ann, config)
        if pick is None:
            assert reason is not None  # selection_of gives a reason whenever it gives no pick
            summary.dropped[reason] += 1
            continue
        vote = _Vote(
            ann.get("id"),
            _annotator(ann),
            answers[SELECTIONS.index(pick)].strip(),
            (str(ann.get("updated_at") or ann.get("created_at") or ""), int(ann.get("id") or 0)),
        )
        previous = comparison.votes.get(vote.annotator)
        if previous is not None:
            summary.dropped["superseded"] += 1
            if previous.order > vote.order:
                continue
        comparison.votes[vote.annotator] = vote


def _decide(comparison: _Comparison, summary: ConversionSummary) -> PreferencePair | None:
    votes = list(comparison.votes.values())
    if not votes:
        return None  # every annotation was dropped, each counted under its reason
    a, b = (x.strip() for x in comparison.answers)
    summary.votes.append(
        (comparison.prompt, a, b, {str(v.annotator): v.chosen_text for v in votes}, comparison.conversation)
    )
    for_a = sum(v.chosen_text == a for v in votes)
    for_b = len(votes) - for_a
    if len(votes) >= 2:
        summary.comparisons_multi += 1
        summary.vote_pairs += len(votes) * (len(votes) - 1) // 2
        summary.agreeing_vote_pairs += for_a * (for_a - 1) // 2 + for_b * (for_b - 1) // 2
    if for_a == for_b:
        summary.dropped["tie"] += 1
        return None
    chosen, rejected = (a, b) if for_a > for_b else (b, a)
    used = tuple(sorted(v.annotation_id for v in votes if v.annotation_id is not None))
    return PreferencePair(
        comparison.prompt,
        chosen,
        rejected,
        comparison.task_id,
        used,
        (max(for_a, for_b), min(for_a, for_b)),
        comparison.conversation,
    )


def count_changes(previous: Mapping[str, str], current: Mapping[str, str]) -> int:
    """Annotations created, updated or deleted between two `ConversionSummary.seen` snapshots."""
    created_or_updated = sum(1 for key, stamp in current.items() if previous.get(key) != stamp)
    deleted = sum(1 for key in previous if key not in current)
    return created_or_updated + deleted
