"""The configured pipeline decides what the loop trains: with POLICY_TRAINER=dpo an annotation event
(and the Train button) also queues a DPO run beside the reward model; with the default (ppo) it
queues only reward training (the reward job queues the policy trainer behind a good model)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from rq.job import Job
from rq.serializers import JSONSerializer

from prefloop.label_config import load_label_config
from prefloop.queue import JobQueue

WEBHOOKS = json.loads((Path(__file__).parents[1] / "fixtures" / "webhooks.json").read_text())


def client_for(settings, **changes):
    from backend.app import create_app

    client = create_app(replace(settings, **changes), test_config={"TESTING": True}).test_client()
    r = client.post("/setup", json={"project": "7.1764224400", "schema": load_label_config("pairwise")})
    assert r.status_code == 200, r.json
    return client


def test_annotation_events_queue_dpo_beside_reward_training(settings, redis_conn):
    client = client_for(settings, policy_trainer="dpo")
    first = client.post("/webhook", json=WEBHOOKS["ANNOTATION_CREATED"]).json
    assert first["kind"] == "train_reward" and first["policy"]["trainer"] == "dpo", first
    again = client.post("/webhook", json=WEBHOOKS["ANNOTATION_UPDATED"]).json
    assert again["policy"]["coalesced"] and again["policy"]["job_id"] == first["policy"]["job_id"]
    job = Job.fetch(first["policy"]["job_id"], connection=redis_conn, serializer=JSONSerializer)
    assert job.kwargs["trainer"] == "dpo" and job.meta["kind"] == "policy" and job.meta["trainer"] == "dpo"
    [listed] = [j for j in JobQueue(settings).jobs(7) if j["kind"] == "policy"]
    assert listed["trainer"] == "dpo"  # what /jobs and the status page show


def test_default_pipeline_queues_only_reward_training(settings, redis_conn):
    client = client_for(settings)
    r = client.post("/webhook", json=WEBHOOKS["ANNOTATION_CREATED"]).json
    assert r["kind"] == "train_reward" and "policy" not in r, r
    assert [j["kind"] for j in JobQueue(settings).jobs(7)] == ["train_reward"]
