"""A push that fails after a publish never fails the publishing job: the failure lands in its result
and one PREDICT job is queued to try again (Label Studio unreachable here: LABEL_STUDIO_URL points
at a closed port)."""

from __future__ import annotations

from prefloop.artifacts import ArtifactStore
from tests.support.reward_helpers import publish_copy, trained_reward_model
from worker.predictions import push_after


def test_label_studio_down_after_a_publish_is_reported_and_retried(settings, redis_conn, tmp_path_factory):
    publish_copy(ArtifactStore(settings.model_dir), 7, trained_reward_model(str(tmp_path_factory.getbasetemp()))[0])
    out = push_after(settings, 7, "reward model rm-x")
    assert out["status"] == "failed" and "LabelStudioUnavailable" in out["error"], out
    assert out["retry"]["job_id"].startswith("predict-7-")
    assert redis_conn.llen("rq:queue:prefloop-gpu") == 1


def test_before_any_reward_model_there_is_nothing_to_push(settings, redis_conn):
    assert push_after(settings, 7, "a generation chunk")["status"] == "skipped"
    assert redis_conn.llen("rq:queue:prefloop-gpu") == 0
