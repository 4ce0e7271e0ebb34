"""`prefloop import-prompts FILE --project ID` against the real Label Studio."""

from __future__ import annotations

import json
import signal

import pytest

from cli.main import main
from prefloop.label_config import load_label_config
from tests.support.services import Process, free_port, prefloop_env, wait_until
from tests.support.tcp_proxy import TcpProxy

CHAT = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "A joke?"},
]


@pytest.fixture
def cli_env(monkeypatch, label_studio, tiny_model_dir, tmp_path) -> dict[str, str]:
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "DEVICE": "cpu",
        "BASE_MODEL": str(tiny_model_dir),
        "MODEL_DIR": str(tmp_path / "models"),
        "MAX_NEW_TOKENS": "8",
        "GENERATION_BATCH_SIZE": "4",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def run(capsys, path, project: int, *extra: str) -> tuple[int, str]:
    rc = main(["import-prompts", str(path), "--project", str(project), *extra])
    return rc, capsys.readouterr().err


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def assert_complete(task: dict) -> None:
    data = task["data"]
    assert data["answer1"] and data["answer2"] and data["answer1"] != data["answer2"], data
    meta = data["prefloop"]
    assert meta["source"] == "import-prompts" and meta["policy_version"] == "pi-base" and meta["prompt_key"]
    assert meta["settings"]["max_new_tokens"] == 8


def test_import_creates_complete_tasks_and_a_rerun_adds_only_new_prompts(cli_env, label_studio, tmp_path, capsys):
    """Every prompt becomes a complete task, imported in chunks with a progress bar; repeats and
    prompts the project already holds are skipped."""
    pid = label_studio.create_project(load_label_config("pairwise"), title="import prompts")
    prompts = ["What is new in the stock market?", "Tell me about cats", "Good morning!", "Tell me about cats"]
    rc, err = run(capsys, write_jsonl(tmp_path / "p.jsonl", prompts), pid, "--chunk-size", "2")
    assert rc == 0, err
    assert "1 repeated in the file, 3 to import" in err and "3/3" in err
    tasks = label_studio.tasks(pid)
    assert sorted(t["data"]["prompt"] for t in tasks) == sorted(set(prompts))
    for task in tasks:
        assert_complete(task)

    more = write_jsonl(tmp_path / "more.jsonl", prompts + [{"prompt": "A new one"}])
    rc, err = run(capsys, more, pid)
    assert rc == 0 and "4 already in project" in err and "1 to import" in err, err
    again = label_studio.tasks(pid)
    assert (
        len(again) == 4 and {t["id"]: t["data"] for t in tasks}.items() <= {t["id"]: t["data"] for t in again}.items()
    )


def test_chats_import_into_the_chat_project(cli_env, label_studio, tmp_path, capsys):
    """Chats land in pairwise_chat.xml's $messages; a plain prompt there becomes a one-message chat."""
    pid = label_studio.create_project(load_label_config("pairwise_chat"), title="import chats")
    path = tmp_path / "chats.json"
    path.write_text(json.dumps([CHAT, {"messages": CHAT[:1]}, "Plain prompt"], indent=1))
    rc, err = run(capsys, path, pid)
    assert rc == 0, err
    tasks = label_studio.tasks(pid)
    assert sorted(len(t["data"]["messages"]) for t in tasks) == [1, 1, 3]
    assert {"role": "user", "content": "Plain prompt"} in [m for t in tasks for m in t["data"]["messages"]]
    for task in tasks:
        assert_complete(task)


def test_prompts_import_into_a_ranking_project_with_answers_per_prompt_answers(
    cli_env, label_studio, tmp_path, capsys, monkeypatch
):
    """A ranking project (label_config/ranking.xml) gets ANSWERS_PER_PROMPT distinct answers per
    prompt in its List, as the worker writes them, and a rerun still skips what is there."""
    monkeypatch.setenv("ANSWERS_PER_PROMPT", "3")
    pid = label_studio.create_project(load_label_config("ranking"), title="import ranking")
    path = write_jsonl(tmp_path / "p.jsonl", ["Rank these, please", "Another prompt to rank"])
    rc, err = run(capsys, path, pid)
    assert rc == 0, err
    tasks = label_studio.tasks(pid)
    assert sorted(t["data"]["prompt"] for t in tasks) == ["Another prompt to rank", "Rank these, please"]
    for task in tasks:
        items = task["data"]["answers"]
        assert [i["id"] for i in items] == ["answer1", "answer2", "answer3"], items
        assert len({i["body"] for i in items}) == 3 and task["data"]["prefloop"]["source"] == "import-prompts"
    rc, err = run(capsys, path, pid)
    assert rc == 0 and "2 already in project" in err and len(label_studio.tasks(pid)) == 2, err


def test_interrupted_import_resumes_without_duplicates(cli_env, label_studio, tmp_path, capsys):
    """A run killed mid-way leaves whole chunks behind; the same command imports exactly the rest."""
    pid = label_studio.create_project(load_label_config("pairwise"), title="import resume")
    path = write_jsonl(tmp_path / "p.jsonl", [f"Prompt number {i}" for i in range(8)])
    proxy = TcpProxy(label_studio.port).start()
    proxy.hold(b"/import", after=1)  # the second import request never reaches Label Studio
    cli = Process(
        ["import-prompts", path, "--project", str(pid), "--chunk-size", "2"],
        prefloop_env(**{**{k.lower(): v for k, v in cli_env.items()}, "label_studio_url": proxy.url}),
        tmp_path / "cli.log",
    ).start()
    try:
        wait_until(proxy.held.is_set, 120, "the second import request")
    finally:
        cli.kill(signal.SIGKILL)
        proxy.stop()
    assert len(label_studio.tasks(pid)) == 2, cli.output()

    rc, err = run(capsys, path, pid, "--chunk-size", "2")
    assert rc == 0 and "2 already in project" in err and "6 to import" in err, err
    tasks = label_studio.tasks(pid)
    assert sorted(t["data"]["prompt"] for t in tasks) == [f"Prompt number {i}" for i in range(8)]


def test_bad_input_imports_nothing_and_says_why(cli_env, label_studio, tmp_path, capsys, monkeypatch):
    """Bad records, a chat for a prompt-only project, a config without Pairwise, an unknown project and an
    unreachable Label Studio each stop the command with a clear message and an empty project."""
    pid = label_studio.create_project(load_label_config("pairwise"), title="import bad input")
    bad = write_jsonl(tmp_path / "bad.jsonl", ["fine", "", {"prompt": ["not", "a", "string"]}])
    rc, err = run(capsys, bad, pid)
    assert (
        rc == 1
        and "bad.jsonl line 2: the prompt is empty" in err
        and 'bad.jsonl line 3: "prompt" must be a string' in err
    )

    chats = write_jsonl(tmp_path / "chats.jsonl", ["fine", CHAT])
    rc, err = run(capsys, chats, pid)
    assert rc == 1 and "chats.jsonl line 2 is a chat" in err and "pairwise_chat.xml" in err, err
    assert label_studio.tasks(pid) == []

    good = write_jsonl(tmp_path / "good.jsonl", ["fine"])
    other = label_studio.create_project(
        '<View><Text name="t" value="$prompt"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>',
        title="not pairwise",
    )
    rc, err = run(capsys, good, other)
    assert rc == 1 and "no <Pairwise> tag" in err and label_studio.tasks(other) == []
    rc, err = run(capsys, good, 987654)
    assert rc == 1 and "has no project 987654" in err

    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
    rc, err = run(capsys, good, pid)
    assert rc == 1 and "is unreachable" in err and "after 4 tries" in err
    assert label_studio.tasks(pid) == []
