"""Serving a published reward model: /reward scores prompt/response pairs for other tools
(/predict answers from stored picks: tests/backend/test_predict.py)."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from prefloop.artifacts import ArtifactStore
from prefloop.scoring import RewardScorer
from tests.support.reward_helpers import publish_copy, trained_reward_model
from tests.support.reward_synthetic import synthetic_pairs


@pytest.fixture
def trained(tmp_path_factory):
    return trained_reward_model(str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def published(settings, trained):
    store = ArtifactStore(settings.model_dir)
    return store, publish_copy(store, 7, trained[0])


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
    assert (
        named["version"] == version
        and client.post("/reward", json={"project": 7, "items": items[:1]}).json["version"] == newer
    )


@pytest.mark.parametrize(
    "body, status, needle",
    [
        ({"project": 7, "items": []}, 400, "empty"),
        ({"project": 7, "items": [{"prompt": "p"}]}, 400, "response"),
        ({"project": 7, "items": [{"response": "r"}]}, 400, "prompt"),
        ({"project": 7, "items": [{"messages": [], "response": "r"}]}, 400, "chat"),
        ({"project": 7, "version": "rm-nope", "items": [{"prompt": "p", "response": "r"}]}, 404, "rm-nope"),
        ({"project": 8, "items": [{"prompt": "p", "response": "r"}]}, 404, "no reward model yet"),
    ],
)
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
