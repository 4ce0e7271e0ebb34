"""/predict answers from the picks the worker stored (prefloop/prediction_store.py), in Label
Studio's shape and task order, and never loads a model: a task nobody scored yet gets an empty
list (Label Studio stores nothing and logs no ERROR) plus one coalesced PREDICT job."""

from __future__ import annotations

from dataclasses import replace

import pytest

from prefloop.artifacts import ArtifactStore
from prefloop.label_config import load_label_config, parse_pairwise_config
from prefloop.prediction_store import PickStore, task_comparison
from tests.support.reward_helpers import publish_copy, trained_reward_model

# The tag name comes from the project's config: use one that is not the shipped "pw".
CONFIG = load_label_config("pairwise").replace('name="pw"', 'name="choice"')
PAIRWISE = parse_pairwise_config(CONFIG)


@pytest.fixture
def published(settings, tmp_path_factory):
    trained = trained_reward_model(str(tmp_path_factory.getbasetemp()))[0]
    store = ArtifactStore(settings.model_dir)
    return store, publish_copy(store, 7, trained), trained


def tasks(n: int, start: int = 0) -> list[dict]:
    return [
        {"id": 100 + i, "data": {"prompt": f"Prompt {i}?", "answer1": f"yes {i}", "answer2": f"no {i}"}}
        for i in range(start, start + n)
    ]


def store_picks(settings, redis_conn, version: str, items: list[dict], picks: list[tuple[str, float]]) -> None:
    keys = [task_comparison(t["data"], PAIRWISE)[0] for t in items]
    PickStore(redis_conn, settings.queue_prefix).put_many(7, version, dict(zip(keys, picks, strict=True)))


def predict(client, items):
    r = client.post("/predict", json={"tasks": items, "project": "7.1764224400", "label_config": CONFIG, "params": {}})
    assert r.status_code == 200, r.json
    assert len(r.json["results"]) == len(items)
    return r.json["results"]


def predict_jobs(redis_conn) -> list[bytes]:
    return [j for j in redis_conn.lrange("rq:queue:prefloop-gpu", 0, -1) if j.startswith(b"predict-7-")]


def test_stored_picks_are_served_in_task_order_and_unscored_tasks_queue_one_predict_job(
    app, client, settings, redis_conn, published
):
    """Scored tasks: the pick under the config's tag, score = P(pick), /setup's model_version. Unscored
    ones: [] and a single PREDICT job however often Label Studio asks. No model is loaded."""
    from backend.context import context

    _, version, _ = published
    model_version = client.post("/setup", json={"project": "7.1764224400", "schema": CONFIG}).json["model_version"]
    assert model_version.startswith(version + "+")
    scored, unscored = tasks(3), tasks(2, start=3)
    store_picks(settings, redis_conn, version, scored, [("left", 0.91), ("right", 0.5123456), ("right", 0.77)])
    mixed = [
        scored[0],
        unscored[0],
        scored[1],
        {"id": 9, "data": {"prompt": "No answers yet", "answer1": "", "answer2": ""}},
        scored[2],
        unscored[1],
    ]
    for _ in range(3):
        results = predict(client, mixed)
    assert results[1] == [] and results[3] == [] and results[5] == []
    for entry, (selected, score) in zip(
        [results[0], results[2], results[4]], [("left", 0.91), ("right", 0.5123), ("right", 0.77)], strict=True
    ):
        assert entry == {
            "model_version": model_version,
            "score": score,
            "result": [
                {"from_name": "choice", "to_name": "answer1", "type": "pairwise", "value": {"selected": selected}}
            ],
        }
    assert len(predict_jobs(redis_conn)) == 1, "one coalesced PREDICT job for the unscored tasks"
    assert context(app).models._entries == {}, "/predict loaded a model in the web tier"


def test_a_new_reward_version_is_not_answered_with_the_old_versions_picks(client, settings, redis_conn, published):
    """Picks are kept per reward version: after a publish, tasks wait for the new model's scores."""
    store, first, trained = published
    items = tasks(2)
    store_picks(settings, redis_conn, first, items, [("left", 0.8), ("left", 0.6)])
    assert all(e["model_version"].startswith(first + "+") for e in predict(client, items))
    second = publish_copy(store, 7, trained)
    assert predict(client, items) == [[], []]
    store_picks(settings, redis_conn, second, items, [("right", 0.7), ("left", 0.9)])
    assert [e["result"][0]["value"]["selected"] for e in predict(client, items)] == ["right", "left"]


def test_before_the_first_reward_model_every_task_gets_an_empty_list_and_no_predict_job(client, redis_conn):
    client.post("/setup", json={"project": "7.1", "schema": CONFIG})
    assert predict(client, tasks(4)) == [[], [], [], []]
    assert predict_jobs(redis_conn) == []


def test_texts_over_max_text_chars_are_neither_looked_up_nor_queued(app, client, settings, redis_conn, published):
    from backend.context import context

    context(app).settings = replace(settings, max_text_chars=50)
    client.post("/setup", json={"project": "7.1", "schema": CONFIG})
    long_task = {"id": 1, "data": {"prompt": "x" * 51, "answer1": "a", "answer2": "b"}}
    assert predict(client, [long_task]) == [[]]
    assert predict_jobs(redis_conn) == []


def test_a_project_nobody_connected_gets_answers_but_costs_no_job(client, redis_conn, published):
    """Without /setup (a forged call), /predict still answers, and queues nothing."""
    assert predict(client, tasks(2)) == [[], []]
    assert predict_jobs(redis_conn) == []


def test_a_ranking_project_is_answered_with_the_stored_order_as_a_ranker_result(
    client, settings, redis_conn, published
):
    """label_config/ranking.xml: a scored task gets the model's order of its List items (a Ranker
    region, score = confidence of the closest adjacent step); one nobody scored gets [] and one
    PREDICT job; a task with one answer in its List has no comparison yet."""
    from prefloop.label_config import parse_label_config, ranking_items

    _, version, _ = published
    ranking = load_label_config("ranking")
    model_version = client.post("/setup", json={"project": "7.1", "schema": ranking}).json["model_version"]
    items = [
        {"id": 200 + i, "data": {"prompt": f"Rank {i}?", "answers": ranking_items([f"a {i}", f"b {i}", f"c {i}"])}}
        for i in range(2)
    ]
    key = task_comparison(items[0]["data"], parse_label_config(ranking))[0]
    PickStore(redis_conn, settings.queue_prefix).put_many(7, version, {key: ("answer2,answer3,answer1", 0.5831)})
    one = {"id": 300, "data": {"prompt": "Rank?", "answers": ranking_items(["only one"])}}
    r = client.post("/predict", json={"tasks": [*items, one], "project": "7.1", "label_config": ranking, "params": {}})
    scored, unscored, single = r.json["results"]
    assert scored == {
        "model_version": model_version,
        "score": 0.5831,
        "result": [
            {
                "from_name": "rank",
                "to_name": "answers",
                "type": "ranker",
                "value": {"ranker": {"rank": ["answer2", "answer3", "answer1"]}},
            }
        ],
    }
    assert unscored == [] and single == [] and len(predict_jobs(redis_conn)) == 1
