"""Serving a published reward model: /predict pre-selects the preferred answer with its probability,
in Label Studio's shape and task order; /reward scores prompt/response pairs for other tools."""

from __future__ import annotations

import base64
import math
from dataclasses import replace

import pytest

from prefloop.artifacts import ArtifactStore
from prefloop.label_config import load_label_config
from prefloop.scoring import RewardScorer
from tests.support.reward_helpers import publish_copy, trained_reward_model
from tests.support.reward_synthetic import synthetic_pairs

# The tag name comes from the project's config: use one that is not the shipped "pw".
CONFIG = load_label_config("pairwise").replace('name="pw"', 'name="choice"')


@pytest.fixture
def trained(tmp_path_factory):
    return trained_reward_model(str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def published(settings, trained):
    store = ArtifactStore(settings.model_dir)
    return store, publish_copy(store, 7, trained[0])


def tasks_for(pairs, sides):
    tasks = []
    for i, (pair, side) in enumerate(zip(pairs, sides)):
        left, right = (pair.chosen, pair.rejected) if side == "left" else (pair.rejected, pair.chosen)
        tasks.append({"id": 1000 + i, "data": {"prompt": pair.prompt, "answer1": left, "answer2": right}})
    return tasks


def test_predict_preselects_the_preferred_answer_in_task_order(client, published, trained):
    """Each task gets the model's pick under the config's tag name, score = P(pick), and /setup's model_version."""
    store, version = published
    model_version = client.post("/setup", json={"project": "7.1764224400", "schema": CONFIG}).json["model_version"]
    assert model_version.startswith(version + "+")
    pairs = synthetic_pairs(12, seed=99)
    sides = ["left", "right"] * 6
    tasks = tasks_for(pairs, sides)
    tasks.insert(3, {"id": 5, "data": {"prompt": "Not generated yet", "answer1": "", "answer2": ""}})
    r = client.post("/predict", json={"tasks": tasks, "project": "7.1764224400", "label_config": CONFIG, "params": {}})
    assert r.status_code == 200, r.json
    results = r.json["results"]
    assert len(results) == len(tasks)
    assert results[3] == {"model_version": model_version}, "a task without answers gets no result"
    del results[3]
    scorer = RewardScorer(trained[0], device="cpu")
    left = scorer.score([p.prompt for p in pairs], [t["data"]["answer1"] for t in tasks_for(pairs, sides)])
    right = scorer.score([p.prompt for p in pairs], [t["data"]["answer2"] for t in tasks_for(pairs, sides)])
    correct = 0
    for entry, l_reward, r_reward, side in zip(results, left, right, sides):
        assert entry["model_version"] == model_version
        assert entry["result"] == [{"from_name": "choice", "to_name": "choice", "type": "pairwise",
                                    "value": {"selected": entry["result"][0]["value"]["selected"]}}]
        selected = entry["result"][0]["value"]["selected"]
        assert selected == ("left" if l_reward >= r_reward else "right")
        assert entry["score"] == pytest.approx(1 / (1 + math.exp(-abs(l_reward - r_reward))), abs=1e-4)
        correct += selected == side
    assert correct >= 10, "the trained model prefers the preferred answer on unseen pairs"


def test_a_new_version_is_served_without_a_restart(client, published, trained):
    """Publishing (or switching back) moves /setup's and /predict's model_version; the model is reloaded once."""
    store, first = published
    tasks = tasks_for(synthetic_pairs(2, seed=5), ["left", "right"])
    body = {"tasks": tasks, "project": "7.1", "label_config": CONFIG}
    assert client.post("/predict", json=body).json["results"][0]["model_version"].startswith(first)
    second = publish_copy(store, 7, trained[0])
    assert client.post("/setup", json={"project": "7.1", "schema": CONFIG}).json["model_version"].startswith(second)
    assert client.post("/predict", json=body).json["results"][0]["model_version"].startswith(second)
    store.set_current(7, "reward", first)
    assert client.post("/predict", json=body).json["results"][1]["model_version"].startswith(first)


def test_predict_out_of_time_returns_entries_without_result(app, client, published):
    """Past PREDICT_TIME_BUDGET, the remaining tasks come back without a result (Label Studio asks again later)."""
    from backend.context import context

    ctx = context(app)
    ctx.settings = replace(ctx.settings, predict_time_budget=1e-9)
    tasks = tasks_for(synthetic_pairs(40, seed=8), ["left"] * 40)
    results = client.post("/predict", json={"tasks": tasks, "project": "7.1", "label_config": CONFIG}).json["results"]
    assert len(results) == 40
    assert sum("result" in e for e in results) < 40 and all("model_version" in e for e in results)


def test_predict_looks_up_picks_the_training_job_stored_with_the_version(client, settings, trained):
    """Tasks scored by the training job (predictions.json) are answered from it; others are scored live."""
    import json
    import shutil

    from prefloop.scoring import PREDICTIONS_FILE, prediction_key

    tasks = tasks_for(synthetic_pairs(3, seed=41), ["left"] * 3)
    stored = tasks[1]["data"]
    source = settings.model_dir / "with-predictions"
    shutil.copytree(trained[0], source)
    key = prediction_key(stored["prompt"], stored["answer1"], stored["answer2"])
    (source / PREDICTIONS_FILE).write_text(json.dumps({"count": 1, "predictions": {key: ["right", 0.777]}}))
    publish_copy(ArtifactStore(settings.model_dir), 7, source)
    results = client.post("/predict", json={"tasks": tasks, "project": "7.1", "label_config": CONFIG}).json["results"]
    assert results[1]["score"] == 0.777 and results[1]["result"][0]["value"]["selected"] == "right"
    assert all("result" in e and e["score"] != 0.777 for e in (results[0], results[2]))


def test_reward_endpoint_scores_pairs_from_the_current_or_a_named_version(client, published, trained):
    """POST /reward returns one reward per item, equal to the served model's scores; chats render like tasks."""
    store, version = published
    pairs = synthetic_pairs(5, seed=21)
    items = [{"prompt": p.prompt, "response": p.chosen} for p in pairs]
    items.append({"messages": [{"role": "user", "content": "Hi"}], "response": "Hello"})
    r = client.post("/reward", json={"project": 7, "items": items})
    assert r.status_code == 200, r.json
    assert r.json["version"] == version and len(r.json["rewards"]) == 6
    scorer = RewardScorer(trained[0], device="cpu")
    expected = scorer.score([p.prompt for p in pairs] + ["User: Hi\nAssistant:"], [p.chosen for p in pairs] + ["Hello"])
    assert r.json["rewards"] == pytest.approx(expected, abs=1e-5)
    newer = publish_copy(store, 7, trained[0])
    named = client.post("/reward", json={"project": 7, "version": version, "items": items[:1]}).json
    assert named["version"] == version and client.post("/reward", json={"project": 7, "items": items[:1]}).json["version"] == newer


@pytest.mark.parametrize("body, status, needle", [
    ({"project": 7, "items": []}, 400, "empty"),
    ({"project": 7, "items": [{"prompt": "p"}]}, 400, "response"),
    ({"project": 7, "items": [{"response": "r"}]}, 400, "prompt"),
    ({"project": 7, "items": [{"messages": [], "response": "r"}]}, 400, "chat"),
    ({"project": 7, "version": "rm-nope", "items": [{"prompt": "p", "response": "r"}]}, 404, "rm-nope"),
    ({"project": 8, "items": [{"prompt": "p", "response": "r"}]}, 404, "no reward model yet"),
])
def test_reward_endpoint_rejects_bad_requests_with_the_reason(client, published, body, status, needle):
    r = client.post("/reward", json=body)
    assert r.status_code == status and needle in r.json["message"]


def test_reward_endpoint_requires_basic_auth_when_configured(settings, published):
    """With BASIC_AUTH_* set, /reward answers 401 without credentials and 200 with them."""
    from backend.app import create_app

    app = create_app(replace(settings, basic_auth_user="ls", basic_auth_pass="s3cret"), test_config={"TESTING": True})
    c = app.test_client()
    body = {"project": 7, "items": [{"prompt": "p", "response": "r"}]}
    assert c.post("/reward", json=body).status_code == 401
    auth = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
    assert c.post("/reward", json=body, headers=auth).status_code == 200
