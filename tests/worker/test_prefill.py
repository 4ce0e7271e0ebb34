"""Answers in through the webhook: the real Label Studio, a real Redis and one real `prefloop worker`
process (kept for the module, as in production), reaching Label Studio through a proxy that a
test can take down."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import redis

from prefloop.artifacts import ArtifactStore
from prefloop.jobkinds import JobKind
from prefloop.label_config import load_label_config
from prefloop.queue import JobQueue
from prefloop.settings import Settings
from prefloop.text import render_chat
from tests.support.labelstudio_server import LabelStudioServer
from tests.support.services import Process, prefloop_env, wait_until
from tests.support.tcp_proxy import TcpProxy

REDIS_DB = 5  # the module's worker outlives single tests; other modules flush db 0 per test
CHATS = [
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke"},
    ],
    [{"role": "user", "content": "Good morning"}],
]


@dataclass
class Stack:
    settings: Settings  # the test's side: Label Studio directly
    queue: JobQueue
    ls: LabelStudioServer
    proxy: TcpProxy  # the worker's way to Label Studio
    worker: Process


@pytest.fixture(scope="module")
def stack(redis_server, label_studio, tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prefill")
    redis_url = f"redis://127.0.0.1:{redis_server.port}/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    knobs = dict(
        redis_url=redis_url,
        model_dir=tmp / "models",
        base_model=str(tiny_model_dir),
        device="cpu",
        label_studio_api_key=label_studio.token,
        job_min_interval=0.0,
        generation_chunk_size=3,
        generation_batch_size=4,
        max_new_tokens=8,
        job_retry_intervals=(1, 1, 2),
    )
    settings = Settings.from_env({}, label_studio_url=label_studio.url, **knobs)
    proxy = TcpProxy(label_studio.port).start()
    env = prefloop_env(
        **{k: v for k, v in knobs.items() if k != "job_retry_intervals"},
        job_retry_intervals="1,1,2",
        label_studio_url=proxy.url,
        omp_num_threads=1,
    )
    worker = Process(["worker", "--queue", "gpu"], env, tmp / "worker.log").start()
    yield Stack(settings, JobQueue(settings), label_studio, proxy, worker)
    worker.stop()
    proxy.stop()


def new_project(stack: Stack, tasks: list[dict], config: str = "pairwise") -> int:
    pid = stack.ls.create_project(load_label_config(config), title=f"prefill {config}")
    if tasks:
        stack.ls.import_tasks(pid, tasks)
    return pid


def prompt_tasks(prompts: list[str]) -> list[dict]:
    """What a user imports into the pairwise template: the prompt, the answer keys empty."""
    return [{"prompt": p, "answer1": "", "answer2": ""} for p in prompts]


def wait_done(stack: Stack, pid: int, count: int = 1, timeout: float = 90) -> list[dict]:
    """All generation jobs of the project (at least `count`) finished or failed; oldest first."""

    def settled():
        jobs = stack.queue.jobs(pid)
        return len(jobs) >= count and all(j["status"] in ("finished", "failed") for j in jobs) and jobs

    try:
        return wait_until(settled, timeout, f"generation jobs of project {pid}", interval=0.2)[::-1]
    except TimeoutError:
        raise AssertionError(f"jobs {stack.queue.jobs(pid)}\nworker log:\n{stack.worker.output()[-4000:]}") from None


def assert_filled(data: dict, version: str = "pi-base") -> dict:
    a, b = data["answer1"], data["answer2"]
    assert a and b and a != b, data
    meta = data["prefloop"]
    assert meta["policy_version"] == version and meta["settings"]["max_new_tokens"] == 8 and int(meta["seed"]) > 0
    return meta


def test_tasks_created_fills_missing_answers_in_chunks_and_redelivery_changes_nothing(stack):
    """TASKS_CREATED -> chunked jobs that write both answers and their provenance; user answers and a
    repeated webhook leave everything as it is."""
    from backend.app import create_app

    prompts = [f"Prompt {i}: tell me about cats" for i in range(7)]
    pid = new_project(stack, prompt_tasks(prompts) + [{"prompt": "mine", "answer1": "user A", "answer2": "user B"}])
    stack.queue.register_project(pid)
    body = {
        "action": "TASKS_CREATED",
        "project": {"id": pid, "token": "SECRET"},
        "tasks": [{"id": t["id"]} for t in stack.ls.tasks(pid)],
    }
    client = create_app(stack.settings, test_config={"TESTING": True}).test_client()
    assert client.post("/webhook", json=body).json["status"] == "queued"
    jobs = wait_done(stack, pid, count=3)
    assert [j["status"] for j in jobs] == ["finished"] * 3, jobs
    assert [j["result"]["filled"] for j in jobs] == [3, 3, 1] and [j["result"]["remaining"] for j in jobs] == [4, 1, 0]
    assert jobs[0]["progress"]["done"] == 3 and jobs[0]["progress"]["total"] == 3
    before = {t["data"]["prompt"]: t for t in stack.ls.tasks(pid)}
    for p in prompts:
        assert_filled(before[p]["data"])
    assert before["mine"]["data"] == {"prompt": "mine", "answer1": "user A", "answer2": "user B"}

    assert client.post("/webhook", json=body).json["status"] == "queued"
    again = wait_done(stack, pid, count=4)[-1]
    assert again["status"] == "finished" and again["result"]["filled"] == 0 and again["result"]["follow_up"] is None
    after = {t["data"]["prompt"]: t for t in stack.ls.tasks(pid)}
    assert {p: (t["data"], t["updated_at"]) for p, t in after.items()} == {
        p: (t["data"], t["updated_at"]) for p, t in before.items()
    }


def test_chat_tasks_get_replies_rendered_through_the_chat_template(stack, tiny_model_dir):
    """A chat project (pairwise_chat.xml) gets replies to the rendered dialogue, reproducible from the recorded seed."""
    from worker.generation import Generator, SamplingConfig

    pid = new_project(stack, [{"messages": c, "answer1": "", "answer2": ""} for c in CHATS], "pairwise_chat")
    stack.queue.enqueue(JobKind.GENERATE, pid, reason="test")
    assert wait_done(stack, pid)[0]["result"]["filled"] == 2
    gen = Generator.load(str(tiny_model_dir), "pi-base")
    for task in stack.ls.tasks(pid):
        data = task["data"]
        meta = assert_filled(data)
        prompt = render_chat(data["messages"])
        assert prompt.startswith("User: ") and prompt.endswith("Assistant:")
        replay = gen.generate([prompt], [int(meta["seed"])], SamplingConfig(max_new_tokens=8))[0]
        assert replay.answers == (data["answer1"], data["answer2"])


def test_policy_loaded_once_per_worker_and_swapped_when_a_new_version_is_published(stack, tiny_model_dir, tmp_path):
    """The worker parent loads a policy once for all jobs; a published PPO policy is picked up; regeneration
    refreshes only unannotated tasks."""
    from cli.tinymodel import build_tiny_gpt2

    pid = new_project(stack, prompt_tasks(["first a", "first b"]))
    runs = []
    for batch in (None, ["second a"]):
        if batch:
            stack.ls.import_tasks(pid, prompt_tasks(batch))
        stack.queue.enqueue(JobKind.GENERATE, pid, reason="test")
        runs.append(wait_done(stack, pid, count=len(runs) + 1)[-1]["result"])
    assert [r["filled"] for r in runs] == [2, 1]
    assert runs[0]["model_loaded_pid"] == runs[1]["model_loaded_pid"] == stack.worker.proc.pid != runs[0]["job_pid"]
    loads = lambda source: len(re.findall(rf"loading policy \S+ \({re.escape(str(source))}\)", stack.worker.output()))  # noqa: E731
    assert loads(tiny_model_dir) == 1, stack.worker.output()

    store = ArtifactStore(stack.settings.model_dir)
    with store.staging(pid, "policy") as staged:
        build_tiny_gpt2(staged, seed=1)
        version = store.publish(pid, "policy", staged)
    annotated = next(t for t in stack.ls.tasks(pid) if t["data"]["prompt"] == "first a")
    stack.ls.annotate(annotated["id"], "left")
    stack.ls.import_tasks(pid, prompt_tasks(["third"]))
    stack.queue.enqueue(JobKind.GENERATE, pid, reason="test")
    third = wait_done(stack, pid, count=3)[-1]["result"]
    assert third["filled"] == 1 and third["policy_version"] == version
    assert loads(store.current_path(pid, "policy")) == 1 and loads(tiny_model_dir) == 1

    stack.queue.enqueue(JobKind.GENERATE, pid, reason="policy published", regenerate=True)
    regen = wait_done(stack, pid, count=4)[-1]["result"]
    assert regen["regenerate"] and regen["filled"] == 2, regen  # "first b", "second a"; not the annotated one
    tasks = {t["data"]["prompt"]: t["data"] for t in stack.ls.tasks(pid)}
    assert tasks["first a"]["prefloop"]["policy_version"] == "pi-base"
    for prompt in ("first b", "second a", "third"):
        assert_filled(tasks[prompt], version)
    assert loads(store.current_path(pid, "policy")) == 1


def test_label_studio_briefly_down_is_retried_with_backoff(stack):
    """A job that finds Label Studio down fails, is rescheduled after JOB_RETRY_INTERVALS, and then fills the tasks."""
    pid = new_project(stack, prompt_tasks(["while down"]))
    stack.proxy.stop()
    try:
        job_id = stack.queue.enqueue(JobKind.GENERATE, pid, reason="test").job_id
        wait_until(lambda: stack.queue.fetch(job_id).get_status().value == "scheduled", 60, "a scheduled retry")
    finally:
        stack.proxy.start()
    job = wait_done(stack, pid)[0]
    assert job["status"] == "finished" and job["result"]["filled"] == 1
    log = stack.worker.output()
    assert f"Job {job_id}: scheduled for retry" in log and "LabelStudioUnavailable: Label Studio at" in log
    assert_filled(stack.ls.tasks(pid)[0]["data"])


def test_unusable_projects_fail_once_with_a_clear_error(stack):
    """A project without a Pairwise tag, or one Label Studio does not have, fails the job at once, saying why."""
    other = stack.ls.create_project(
        '<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>',
        title="not pairwise",
    )
    for pid, message in (
        (other, "LabelConfigError: the label config has no <Pairwise> tag"),
        (987654, "UnknownProject: Label Studio at"),
    ):
        job_id = stack.queue.enqueue(JobKind.GENERATE, pid, reason="test").job_id
        job = wait_done(stack, pid)[0]
        assert job["status"] == "failed" and message in job["error"], job
        assert f"Job {job_id}: scheduled for retry" not in stack.worker.output(), "a retry cannot fix this"
