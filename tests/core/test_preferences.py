"""Label Studio annotations become preference pairs: every case from exports shaped like Label Studio's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefloop.label_config import load_label_config, parse_pairwise_config
from prefloop.preferences import count_changes, selection_of, tasks_to_pairs
from prefloop.text import render_prompt, reward_text

FIXTURES = Path(__file__).parents[1] / "fixtures" / "preferences"


def load(name: str):
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return data, parse_pairwise_config(load_label_config(data["label_config"]))


def by_task(pairs):
    return {p.task_id: p for p in pairs}


def test_single_annotations_left_and_right_with_either_to_name():
    """`left` chooses the first answer; `to_name` may be the tag's name or "answer1,answer2"."""
    data, config = load("basic")
    pairs, _ = tasks_to_pairs(data["tasks"], config)
    got = by_task(pairs)
    assert (got[1].chosen, got[1].rejected) == ("Sunny and warm.", "I do not know.")
    assert (got[2].chosen, got[2].rejected) == ("A cat.", "A stone.")
    assert got[1].prompt == "What is the weather?" and got[1].annotation_ids == (101,)


def test_other_regions_beside_the_pairwise_result_are_ignored():
    """An annotation with a comment region and a Pairwise region still counts."""
    data, config = load("basic")
    got = by_task(tasks_to_pairs(data["tasks"], config)[0])
    assert got[10].chosen == "A longer answer."


def test_unusable_annotations_and_tasks_are_dropped_with_reasons():
    """Skipped, empty, foreign, malformed, unanswered and identical cases are counted, not trained on."""
    data, config = load("basic")
    pairs, summary = tasks_to_pairs(data["tasks"], config)
    assert sorted(by_task(pairs)) == [1, 2, 10]
    assert dict(summary.dropped) == {
        "skipped": 1,
        "empty_result": 1,
        "not_annotated": 1,
        "missing_answers": 1,
        "no_pairwise_result": 1,
        "bad_selection": 1,
        "identical_answers": 1,
    }
    assert summary.tasks == 10 and summary.annotations == 9 and summary.pairs == 3
    text = summary.describe()
    assert "was_cancelled" in text and "3 preference pairs" in text


def test_several_annotators_majority_wins_ties_are_dropped_and_agreement_is_reported():
    """2 of 3 annotators win; a 1:1 split is dropped; one annotator's latest annotation replaces their older one."""
    data, config = load("multi_annotator")
    pairs, summary = tasks_to_pairs(data["tasks"], config)
    got = by_task(pairs)
    assert sorted(got) == [20, 22]
    assert got[20].chosen == "Apple." and got[20].votes == (2, 1) and got[20].annotation_ids == (201, 202, 203)
    assert got[22].chosen == "Saturday." and got[22].annotation_ids == (222,)
    assert summary.dropped["tie"] == 1 and summary.dropped["superseded"] == 1
    # task 20: 1 agreeing pair of 3 (the two "left" votes); task 21: 0 of 1; task 22 has one annotator left
    assert summary.agreement == pytest.approx(1 / 4)
    assert summary.as_dict()["annotator_agreement"] == pytest.approx(0.25)
    assert summary.comparisons_multi == 2


def test_duplicate_tasks_are_one_comparison_whatever_the_answer_order():
    """The same prompt and answers in three tasks (one with the answers swapped) give one pair with pooled votes."""
    data, config = load("duplicates")
    pairs, summary = tasks_to_pairs(data["tasks"], config)
    assert len(pairs) == 1
    pair = pairs[0]
    assert (pair.chosen, pair.rejected, pair.votes) == ("Paris.", "Lyon.", (2, 0))
    assert pair.task_id == 30 and pair.annotation_ids == (301, 311)
    assert summary.dropped["duplicate_task"] == 2
    assert summary.dropped["superseded"] == 1, "annotator 1's older vote on the duplicate task is replaced"
    assert summary.agreement == 1.0


def test_updated_and_deleted_annotations_follow_label_studios_current_state():
    """After an update the new choice counts, a deleted annotation is gone, and both count as changes."""
    data, config = load("updated_deleted")
    before, before_summary = tasks_to_pairs(data["before"], config)
    after, after_summary = tasks_to_pairs(data["after"], config)
    assert {p.task_id: p.chosen for p in before} == {40: "Tea.", 41: "Cats."}
    assert {p.task_id: p.chosen for p in after} == {40: "Coffee.", 42: "Mountains."}
    assert count_changes(before_summary.seen, after_summary.seen) == 3  # 401 updated, 411 deleted, 421 created
    assert count_changes(after_summary.seen, after_summary.seen) == 0
    assert count_changes({}, after_summary.seen) == 2


def test_chat_tasks_render_the_dialogue_as_the_prompt():
    """A chat task's prompt is its messages rendered like generation renders them; an empty chat is dropped."""
    data, config = load("chat")
    pairs, summary = tasks_to_pairs(data["tasks"], config)
    assert len(pairs) == 1 and summary.dropped["bad_prompt"] == 1
    pair = pairs[0]
    assert pair.prompt == render_prompt(data["tasks"][0]["data"], config)
    assert pair.prompt.startswith("User: Hi there.\nAssistant: Hello! How can I help?\nUser: Tell me a joke.\n")
    assert pair.prompt.endswith("Assistant:") and pair.chosen.startswith("Why did the cat")


def test_selection_is_matched_by_the_configs_tag_name():
    """A Pairwise result from another tag name does not count; the project's tag name does."""
    config = parse_pairwise_config(load_label_config("pairwise").replace('name="pw"', 'name="choice"'))
    region = {"from_name": "choice", "to_name": "choice", "type": "pairwise", "value": {"selected": "right"}}
    assert selection_of({"result": [region]}, config) == ("right", None)
    assert selection_of({"result": [dict(region, from_name="pw")]}, config) == (None, "no_pairwise_result")
    assert selection_of({"result": [dict(region, to_name="answer1, answer2")]}, config) == ("right", None)
    assert selection_of({"result": [region, dict(region, value={"selected": "left"})]}, config) == (
        None,
        "conflicting_results",
    )


def test_export_writes_trl_jsonl_and_a_summary(tmp_path, capsys, monkeypatch):
    """`prefloop export` writes prompt/chosen/rejected lines whose prompt + chosen is the text prefloop scores."""
    from cli.main import main

    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    data, config = load("basic")
    export = tmp_path / "export.json"
    export.write_text(json.dumps(data["tasks"]))
    out = tmp_path / "pairs.jsonl"
    assert main(["export", "--tasks-file", str(export), "-o", str(out), "--with-ids"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == [1, 2, 10]
    first = rows[0]
    assert first["prompt"] + first["chosen"] == reward_text("What is the weather?", "Sunny and warm.")
    assert first["prompt"] + first["rejected"] == reward_text("What is the weather?", "I do not know.")
    err = capsys.readouterr().err
    assert "3 preference pairs" in err and "skipped" in err and "wrote 3 pairs" in err
