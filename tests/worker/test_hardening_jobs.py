"""Jobs against a real Label Studio and a real Redis, run by RQ's in-process worker (the same job
code `prefloop worker` runs): failures a retry cannot fix fail once for every job kind, and the
Train button (START_TRAINING) trains only when an annotation changed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from prefloop.jobkinds import JobKind
from prefloop.label_config import load_label_config
from prefloop.queue import JobQueue
from worker import runtime

NOT_PAIRWISE = '<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>'


@pytest.fixture
def use_settings():
    """Point the in-process worker's job code at the test's settings."""
    previous = runtime._settings
    yield runtime.init
    runtime.init(previous)


def run_jobs(queue: JobQueue) -> None:
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    SimpleWorker([queue.queue("gpu")], connection=queue.connection, serializer=JSONSerializer).work(burst=True)


@pytest.mark.parametrize("case", ["wrong token (401)", "no such project (404)", "no Pairwise tag", "bad knob"])
def test_permanent_failures_fail_once_for_reward_jobs(ls_settings, label_studio, use_settings, case):
    """Reward jobs used to retry a 401, a 404 and a label config without a Pairwise tag three times."""
    settings = replace(ls_settings, job_retry_intervals=(1, 1, 1))
    project = label_studio.create_project(load_label_config("pairwise"), title="permanent failures")
    extra: dict = {}
    if case.startswith("wrong token"):
        settings = replace(settings, label_studio_api_key="0" * 40)
    elif case.startswith("no such project"):
        project = 987654
    elif case == "no Pairwise tag":
        project = label_studio.create_project(NOT_PAIRWISE, title="not pairwise")
    else:
        extra = {"config": {"no_such_knob": 1}}
    use_settings(settings)
    queue = JobQueue(settings)
    job_id = queue.enqueue(JobKind.TRAIN_REWARD, project, reason="test", force=True, **extra).job_id
    assert queue.fetch(job_id).retries_left == 3
    run_jobs(queue)
    job = queue.fetch(job_id)
    assert job.get_status().value == "failed", (case, job.get_status())
    assert job.retries_left == 0 and queue.queue("gpu").scheduled_job_registry.count == 0, case
    permanent = ("LabelStudioError", "UnknownProject", "LabelConfigError", "InputError")
    assert job.meta["last_error"].split(":")[0] in permanent


def test_label_studio_down_is_still_retried(ls_settings, use_settings):
    """Only permanent failures skip the retries: a Label Studio that does not answer is rescheduled."""
    from tests.support.services import free_port

    settings = replace(ls_settings, label_studio_url=f"http://127.0.0.1:{free_port()}", job_retry_intervals=(30,))
    use_settings(settings)
    queue = JobQueue(settings)
    job_id = queue.enqueue(JobKind.TRAIN_REWARD, 5, reason="test").job_id
    run_jobs(queue)
    job = queue.fetch(job_id)
    assert job.get_status().value == "scheduled" and "LabelStudioUnavailable" in job.meta["last_error"]


def test_start_training_with_no_changed_annotation_trains_nothing(ls_settings, label_studio, use_settings):
    """The Train button's run skips when no annotation changed since the newest version and records
    the clean state, so the next START_TRAINING queues nothing; --force still trains."""
    from backend.app import create_app

    settings = replace(ls_settings, min_new_annotations=0)
    use_settings(settings)
    project = label_studio.create_project(load_label_config("pairwise"), title="no changes")
    queue = JobQueue(settings)
    job_id = queue.enqueue(JobKind.TRAIN_REWARD, project, reason="START_TRAINING", on_change=True).job_id
    run_jobs(queue)
    result = queue.fetch(job_id).return_value()
    assert result["status"] == "skipped" and result["changes"] == 0, result
    assert "--force" in result["reason"]
    client = create_app(settings, test_config={"TESTING": True}).test_client()
    setup = client.post("/setup", json={"project": f"{project}.1", "schema": load_label_config("pairwise")})
    assert setup.status_code == 200
    r = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": project}})
    assert r.status_code == 200 and r.json["status"] == "unchanged", r.json
    assert queue.queue("gpu").count == 0
    forced = queue.enqueue(JobKind.TRAIN_REWARD, project, reason="prefloop train-reward --force", force=True).job_id
    run_jobs(queue)
    result = queue.fetch(forced).return_value()
    assert result["forced"] is True and "MIN_NEW_ANNOTATIONS" not in str(result.get("reason")), result
