"""Rankings of K answers (label_config/ranking.xml) -> the K(K-1)/2 preference pairs they imply."""

from __future__ import annotations

import pytest

from prefloop.errors import LabelConfigError
from prefloop.label_config import RankingConfig, load_label_config, parse_label_config, ranking_items
from prefloop.preferences import tasks_to_pairs
from prefloop.text import reward_text

CONFIG = parse_label_config(load_label_config("ranking"))
ANSWERS = ["The first answer.", "The second answer.", "The third answer."]


def task(annotations, answers=ANSWERS, task_id=1):
    return {
        "id": task_id,
        "data": {"prompt": "Which is best?", "answers": ranking_items(answers)},
        "annotations": annotations,
    }


def ranked(order, ann_id=10, user=1, when="2026-12-01T09:00:00Z", **extra):
    """A ranking as Label Studio 1.23.2's Ranker saves it (seen in the browser test)."""
    return {
        "id": ann_id,
        "completed_by": user,
        "updated_at": when,
        "result": [{"from_name": "rank", "to_name": "answers", "type": "ranker", "value": {"ranker": {"rank": order}}}],
        **extra,
    }


def test_the_shipped_ranking_config_is_recognised_and_a_config_without_either_tag_is_refused():
    assert CONFIG == RankingConfig("rank", "answers", "answers", "prompt", None)
    with pytest.raises(LabelConfigError, match="Pairwise"):
        parse_label_config('<View><Text name="t" value="$t"/></View>')
    with pytest.raises(LabelConfigError, match="List"):
        parse_label_config('<View><Text name="t" value="$t"/><Ranker name="r" toName="nope"/></View>')


def test_a_ranking_of_three_becomes_the_three_pairs_it_implies():
    pairs, summary = tasks_to_pairs([task([ranked(["answer3", "answer1", "answer2"])])], CONFIG)
    assert {(p.chosen, p.rejected) for p in pairs} == {
        ("The third answer.", "The first answer."),
        ("The third answer.", "The second answer."),
        ("The first answer.", "The second answer."),
    }
    assert summary.pairs == 3 and all(p.prompt == "Which is best?" and p.task_id == 1 for p in pairs)


def test_k_answers_give_k_choose_2_pairs():
    answers = [f"Answer number {i}." for i in range(5)]
    order = [f"answer{k}" for k in (2, 5, 1, 4, 3)]
    pairs, _ = tasks_to_pairs([task([ranked(order)], answers=answers)], CONFIG)
    assert len(pairs) == 10


def test_annotators_vote_per_pair_and_the_latest_ranking_of_one_annotator_wins():
    annotations = [
        ranked(["answer1", "answer2", "answer3"], 10, user=1, when="2026-12-01T09:00:00Z"),
        ranked(["answer3", "answer2", "answer1"], 11, user=1, when="2026-12-01T09:05:00Z"),
        ranked(["answer3", "answer1", "answer2"], 12, user=2),
    ]
    pairs, summary = tasks_to_pairs([task(annotations)], CONFIG)
    decided = {(p.chosen, p.rejected): p.votes for p in pairs}
    # user 1's latest (3 > 2 > 1) and user 2 (3 > 1 > 2) agree on 3 > 1 and 3 > 2, split on 1 vs 2
    assert decided == {
        ("The third answer.", "The first answer."): (2, 0),
        ("The third answer.", "The second answer."): (2, 0),
    }
    assert summary.dropped["tie"] == 1


@pytest.mark.parametrize(
    "annotation, reason",
    [
        (ranked(["answer1", "answer2"]), "incomplete_ranking"),
        (ranked(["answer1", "answer2", "answer3"], was_cancelled=True), "skipped"),
        ({"id": 3, "result": []}, "empty_result"),
        (
            {"id": 4, "result": [{"from_name": "other", "type": "ranker", "value": {"ranker": {"x": ["answer1"]}}}]},
            "no_ranking_result",
        ),
    ],
)
def test_unusable_rankings_are_dropped_with_their_reason(annotation, reason):
    pairs, summary = tasks_to_pairs([task([annotation])], CONFIG)
    assert pairs == [] and summary.dropped[reason] == 1


def test_a_task_whose_answers_are_not_written_yet_is_counted_not_converted():
    pairs, summary = tasks_to_pairs([task([ranked(["answer1"])], answers=["only one"])], CONFIG)
    assert pairs == [] and summary.dropped["missing_answers"] == 1


def test_export_of_a_ranking_project_writes_the_pairs_each_ranking_implies(tmp_path, capsys, monkeypatch):
    """`prefloop export --tasks-file` on a ranking project's JSON export (no --label-config: the
    Ranker results say which interface wrote it) writes the K(K-1)/2 pairs per ranking."""
    import json

    from cli.main import main

    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task([ranked(["answer2", "answer3", "answer1"])]), task([], task_id=2)]))
    out = tmp_path / "pairs.jsonl"
    assert main(["export", "--tasks-file", str(export), "-o", str(out), "--no-model"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["chosen"].strip(), r["rejected"].strip()) for r in rows} == {
        ("The second answer.", "The third answer."),
        ("The second answer.", "The first answer."),
        ("The third answer.", "The first answer."),
    }
    assert all(r["prompt"] + r["chosen"] == reward_text("Which is best?", r["chosen"].strip()) for r in rows)
    assert "wrote 3 pairs" in capsys.readouterr().err


def test_a_ranking_task_is_one_comparison_with_its_answers_in_the_order_shown():
    """The key covers the prompt and every answer in order; a task with fewer than two answers has none."""
    from prefloop.prediction_store import comparison_key, task_comparison

    key, conversation, answers = task_comparison(task([])["data"], CONFIG)
    assert answers == tuple(ANSWERS) and key == comparison_key("Which is best?", *ANSWERS)
    reordered = task([], answers=ANSWERS[::-1])["data"]
    assert task_comparison(reordered, CONFIG)[0] != key
    assert task_comparison({"prompt": "Which?", "answers": ranking_items(ANSWERS[:1])}, CONFIG) is None


def test_a_ranking_prediction_is_a_ranker_region_and_its_pick_survives_redis(redis_conn, settings):
    """The region Label Studio's Ranker saves and loads (item ids best first under the Ranker's name,
    to the List); the pick is stored and read back as it was."""
    from prefloop.prediction_store import PickStore, prediction_result, ranking_selection

    selection = ranking_selection([2, 0, 1], ["answer1", "answer2", "answer3"])
    assert prediction_result(CONFIG, selection) == [
        {
            "from_name": "rank",
            "to_name": "answers",
            "type": "ranker",
            "value": {"ranker": {"rank": ["answer3", "answer1", "answer2"]}},
        }
    ]
    picks = PickStore(redis_conn, settings.queue_prefix)
    picks.put_many(1, "rm-1", {"k": (selection, 0.61), "j": ("left", 0.7)})
    assert picks.get_many(1, "rm-1", ["k", "j", "missing"]) == [("answer3,answer1,answer2", 0.61), ("left", 0.7), None]


def test_an_orders_confidence_is_that_of_its_closest_adjacent_pair():
    from prefloop.scoring import order_confidence, preference_probability

    assert order_confidence([3.0, 1.0]) == preference_probability(3.0, 1.0)
    assert order_confidence([3.0, 2.9, -5.0]) == preference_probability(3.0, 2.9)
    assert order_confidence([1.0, 1.0, 0.0]) == 0.5


def test_a_ranking_pick_names_the_tasks_own_item_ids():
    """A ranking imported with its own List ids (not prefloop's answer1..K) is predicted with those
    ids, which is what its Ranker matches, and the pick survives the store's encoding."""
    from prefloop.label_config import ranking_ids
    from prefloop.prediction_store import _decode, ranking_selection

    data = {"prompt": "Which?", "answers": [{"id": "x 1", "body": "one"}, {"id": "y", "body": "two"}]}
    selection = ranking_selection([1, 0], ranking_ids(data, CONFIG))
    assert selection == "y,x 1" and _decode(f"{selection} 0.612000") == ("y,x 1", 0.612)
    assert prediction_ids(selection) == ["y", "x 1"]


def prediction_ids(selection: str) -> list[str]:
    from prefloop.prediction_store import prediction_result

    return prediction_result(CONFIG, selection)[0]["value"]["ranker"]["rank"]
