"""Wilson intervals on accuracies and per-annotator agreement (prefloop.stats, prefloop.annotators)."""

from __future__ import annotations

import pytest

from prefloop.annotators import annotator_stats, describe
from prefloop.label_config import load_label_config, parse_pairwise_config
from prefloop.preferences import tasks_to_pairs
from prefloop.stats import accuracy_interval, compare, wilson_interval


def test_wilson_interval_matches_the_published_formula_and_stays_inside_0_1():
    """10 of 27 (the issue's 0.37 on 27 pairs) is [0.215, 0.558]; 0 of 5 and 5 of 5 stay inside [0, 1]."""
    low, high = wilson_interval(10, 27)
    assert low == pytest.approx(0.2153, abs=1e-4) and high == pytest.approx(0.5577, abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and 0.4 < wilson_interval(0, 5)[1] < 0.45
    assert wilson_interval(5, 5)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert accuracy_interval(0.7407, 27) == accuracy_interval(20 / 27, 27)
    narrow, wide = accuracy_interval(0.75, 400), accuracy_interval(0.75, 20)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 3
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(6, 5)


def test_compare_calls_a_difference_only_when_intervals_do_not_overlap():
    assert compare((0.6, 0.8), (0.3, 0.55)) == "better"
    assert compare((0.3, 0.55), (0.6, 0.8)) == "worse"
    assert compare(accuracy_interval(0.74, 27), accuracy_interval(0.56, 27)) == "overlap"


def _task(task_id: int, votes: dict[int, str]) -> dict:
    anns = [
        {
            "id": task_id * 10 + who,
            "completed_by": who,
            "updated_at": "2026-12-01T00:00:00Z",
            "result": [{"from_name": "pw", "to_name": "pw", "type": "pairwise", "value": {"selected": side}}],
        }
        for who, side in votes.items()
    ]
    return {
        "id": task_id,
        "data": {"prompt": f"q{task_id}", "answer1": f"a{task_id}", "answer2": f"b{task_id}"},
        "annotations": anns,
    }


def test_a_contrarian_annotator_stands_out_against_the_majority_and_the_model():
    """Annotators 1 and 2 agree on 8 comparisons; 3 always picks the other answer. Leave-one-out:
    1 and 2 agree with the others' majority only where 3 is absent or outvoted."""
    tasks = [_task(i, {1: "left", 2: "left", 3: "right"}) for i in range(8)]
    tasks += [_task(100 + i, {1: "left", 2: "left"}) for i in range(4)]
    pairs, summary = tasks_to_pairs(tasks, parse_pairwise_config(load_label_config("pairwise")))
    assert len(pairs) == 12 and len(summary.votes) == 12
    model_likes_left = lambda prompt, a, b: a  # noqa: E731  (a model that always prefers answer1)
    stats = annotator_stats(summary.votes, model_likes_left)
    assert stats["3"]["votes"] == 8 and stats["3"]["majority"]["rate"] == 0.0 and stats["3"]["model"]["rate"] == 0.0
    # annotator 1 on the 8 three-way tasks: the others are {2: left, 3: right}, a tie -> left out;
    # on the 4 two-way tasks annotator 2 agrees -> 4 of 4
    assert stats["1"]["majority"] == {"rate": 1.0, "low": pytest.approx(0.5101, abs=1e-3), "high": 1.0, "n": 4}
    assert stats["1"]["model"]["rate"] == 1.0 and stats["1"]["model"]["n"] == 12
    text = describe(stats, "rm-x")
    assert "reward model rm-x" in text and "0.00 [0.00-0.32] of 8" in text


def test_without_a_model_only_majority_agreement_is_reported():
    _, summary = tasks_to_pairs(
        [_task(1, {1: "left", 2: "right", 3: "left"})], parse_pairwise_config(load_label_config("pairwise"))
    )
    stats = annotator_stats(summary.votes)
    assert stats["2"]["majority"]["rate"] == 0.0 and stats["2"]["model"] is None
    assert "model" not in describe(stats).splitlines()[1]
