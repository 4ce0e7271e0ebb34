"""Predictions pushed into a real Label Studio by the worker (worker/predictions.py): every task with
answers gets the serving reward model's pick and confidence under /setup's model_version, the
project's model_version follows (so the "Prediction score" column and its ordering count them),
older prefloop predictions are replaced, other models' predictions are left alone, and the
"Least certain first" tab and the labeling stream serve the lowest score first."""

from __future__ import annotations

import shutil

import pytest
import redis

from cli.commands.init import LEAST_CERTAIN_TAB, UNCERTAINTY_SAMPLING, least_certain_view
from prefloop.artifacts import ArtifactStore
from prefloop.label_config import load_label_config, parse_pairwise_config
from prefloop.labelstudio import LabelStudioClient
from prefloop.prediction_store import PickStore, task_comparison
from prefloop.scoring import RewardScorer
from tests.support.reward_helpers import publish_copy, trained_reward_model
from tests.support.reward_synthetic import synthetic_pairs
from worker.predictions import push_predictions

PAIRWISE = parse_pairwise_config(load_label_config("pairwise"))


@pytest.fixture
def project(label_studio):
    project_id = label_studio.create_project(load_label_config("pairwise"), title="pushed predictions")
    pairs = synthetic_pairs(12, seed=61)
    label_studio.import_tasks(
        project_id,
        [{"data": {"prompt": p.prompt, "answer1": p.chosen, "answer2": p.rejected}} for p in pairs]
        + [{"data": {"prompt": "No answers yet", "answer1": "", "answer2": ""}}],
    )
    yield project_id
    label_studio.api("DELETE", f"/api/projects/{project_id}")


def by_task(label_studio, project_id: int) -> dict[int, list[dict]]:
    return {t["id"]: t["predictions"] for t in label_studio.tasks(project_id)}


def test_push_writes_current_picks_follows_the_version_and_replaces_old_ones(
    ls_settings, label_studio, project, tmp_path_factory
):
    trained = trained_reward_model(str(tmp_path_factory.getbasetemp()))[0]
    store = ArtifactStore(ls_settings.model_dir)
    client = LabelStudioClient(ls_settings)
    assert push_predictions(ls_settings, project, client=client)["status"] == "skipped", "no reward model yet"
    # Label Studio answers 404 for the page after a full last page: the listing ends there.
    assert len(list(client.iter_tasks(project, page_size=13, fields="task_only"))) == 13

    reward = publish_copy(store, project, trained)
    first = store.model_version(project)
    tasks = sorted(label_studio.tasks(project), key=lambda t: t["id"])
    answered, blank = tasks[:-1], tasks[-1]
    user_pred = label_studio.api(
        "POST",
        "/api/predictions",
        json={
            "task": answered[0]["id"],
            "model_version": "someone-elses-model",
            "score": 0.1,
            "result": [{"from_name": "pw", "to_name": "pw", "type": "pairwise", "value": {"selected": "left"}}],
        },
    )

    out = push_predictions(ls_settings, project, client=client)
    assert (out["written"], out["scored"], out["without_answers"]) == (len(answered), len(answered), 1), out
    scorer = RewardScorer(trained, device="cpu")
    expected = scorer.prefer(
        [t["data"]["prompt"] for t in answered],
        [t["data"]["answer1"] for t in answered],
        [t["data"]["answer2"] for t in answered],
    )
    stored = by_task(label_studio, project)
    assert stored[blank["id"]] == []
    for task, (selected, prob) in zip(answered, expected, strict=True):
        [mine] = [p for p in stored[task["id"]] if p["model_version"] == first]
        assert mine["result"][0]["value"]["selected"] == selected and mine["score"] == pytest.approx(prob, abs=1e-4)
    assert label_studio.api("GET", f"/api/projects/{project}")["model_version"] == first
    scores = [t["predictions_score"] for t in label_studio.tasks(project) if t["id"] != blank["id"]]
    assert all(s is not None and 0.5 <= s <= 1 for s in scores), "the Prediction score column counts them"
    keys = [task_comparison(t["data"], PAIRWISE)[0] for t in answered]
    picks = PickStore(redis.Redis.from_url(ls_settings.redis_url), ls_settings.queue_prefix)
    assert all(p is not None for p in picks.get_many(project, reward, keys)), "/predict can answer from Redis"

    again = push_predictions(ls_settings, project, client=client)
    assert (again["written"], again["already_current"]) == (0, len(answered))

    # A new policy changes the serving model_version: picks are re-labelled (no scoring), old ones deleted.
    policy_src = tmp_path_factory.mktemp("policy")
    shutil.copytree(trained, policy_src, dirs_exist_ok=True)
    with store.staging(project, "policy") as staged:
        shutil.copytree(policy_src, staged, dirs_exist_ok=True)
        (staged / "version.json").unlink(missing_ok=True)
        store.publish(project, "policy", staged)
    second = store.model_version(project)
    relabel = push_predictions(ls_settings, project, client=client)
    n = len(answered)
    assert (relabel["scored"], relabel["reused"], relabel["deleted_old_predictions"]) == (0, n, n), relabel
    versions = label_studio.api("GET", f"/api/projects/{project}/model-versions/")
    assert versions == {second: len(answered), "someone-elses-model": 1}, "only prefloop's old ones go"
    assert label_studio.api("GET", f"/api/projects/{project}")["model_version"] == second
    assert user_pred["id"] in [p["id"] for p in by_task(label_studio, project)[answered[0]["id"]]]

    # Regenerated answers (a generation chunk): the task's prefloop prediction is replaced, not added.
    [task] = [t for t in client.iter_tasks(project, fields="task_only") if t["id"] == answered[1]["id"]]
    task["data"]["answer2"] = "A brand new second answer."
    label_studio.api("PATCH", f"/api/tasks/{task['id']}", json={"data": task["data"]})
    replaced = push_predictions(ls_settings, project, client=client, tasks=[task], replace=True)
    assert (replaced["written"], replaced["scored"], replaced["deleted_replaced_predictions"]) == (1, 1, 1)
    assert [p["model_version"] for p in by_task(label_studio, project)[task["id"]]] == [second]


def test_least_certain_tab_orders_by_score_and_the_stream_serves_the_least_certain_first(
    ls_settings, label_studio, project, tmp_path_factory
):
    store = ArtifactStore(ls_settings.model_dir)
    publish_copy(store, project, trained_reward_model(str(tmp_path_factory.getbasetemp()))[0])
    client = LabelStudioClient(ls_settings)
    push_predictions(ls_settings, project, client=client)
    tab = least_certain_view(client, project)
    assert least_certain_view(client, project)["id"] == tab["id"], "a second run adds no second tab"
    assert [v["data"]["title"] for v in client.list_views(project)].count(LEAST_CERTAIN_TAB) == 1
    assert label_studio.api("GET", f"/api/projects/{project}")["sampling"] == UNCERTAINTY_SAMPLING
    listed = label_studio.api("GET", "/api/tasks", params={"project": project, "view": tab["id"]})["tasks"]
    scores = [t["predictions_score"] for t in listed if t["predictions_score"] is not None]
    assert len(scores) == 12 and scores == sorted(scores), "the tab lists the least certain first"
    nxt = label_studio.api("GET", f"/api/projects/{project}/next")
    assert nxt["id"] == listed[0]["id"], "Label All Tasks starts with the least certain task"


def test_a_ranking_project_gets_the_models_order_of_each_tasks_answers(ls_settings, label_studio, tmp_path_factory):
    """label_config/ranking.xml: each task with its answers gets a Ranker prediction, the answers in
    the order of the reward model's rewards (best first), the score its confidence in the closest
    adjacent step; a task with fewer than two answers gets none; the project follows the version."""
    from prefloop.label_config import parse_label_config, ranking_items
    from prefloop.scoring import order_confidence

    trained = trained_reward_model(str(tmp_path_factory.getbasetemp()))[0]
    pid = label_studio.create_project(load_label_config("ranking"), title="ranked predictions")
    pairs = synthetic_pairs(9, seed=62)
    groups = [[pairs[i].chosen, pairs[i + 1].rejected, pairs[i + 2].chosen] for i in range(0, 9, 3)]
    label_studio.import_tasks(
        pid,
        [{"data": {"prompt": f"Rank {i}?", "answers": ranking_items(g)}} for i, g in enumerate(groups)]
        + [{"data": {"prompt": "Only one", "answers": ranking_items(["alone"])}}],
    )
    publish_copy(ArtifactStore(ls_settings.model_dir), pid, trained)
    version = ArtifactStore(ls_settings.model_dir).model_version(pid)
    out = push_predictions(ls_settings, pid, client=LabelStudioClient(ls_settings))
    assert (out["written"], out["without_answers"]) == (3, 1), out
    scorer = RewardScorer(trained, device="cpu")
    config = parse_label_config(load_label_config("ranking"))
    for task in label_studio.tasks(pid):
        if task["data"]["prompt"] == "Only one":
            assert task["predictions"] == []
            continue
        bodies = [item["body"] for item in task["data"]["answers"]]
        rewards = scorer.score([task["data"]["prompt"]] * 3, bodies)
        best_first = sorted(range(3), key=lambda i: -rewards[i])
        [prediction] = task["predictions"]
        [region] = prediction["result"]
        assert prediction["model_version"] == version and {k: region[k] for k in ("from_name", "to_name", "type")} == {
            "from_name": config.from_name,
            "to_name": "answers",
            "type": "ranker",
        }
        assert region["value"]["ranker"] == {"rank": [f"answer{i + 1}" for i in best_first]}
        assert prediction["score"] == pytest.approx(order_confidence([rewards[i] for i in best_first]), abs=1e-4)
    assert label_studio.api("GET", f"/api/projects/{pid}")["model_version"] == version
