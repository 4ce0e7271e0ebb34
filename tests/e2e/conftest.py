"""Fixtures for the end-to-end tests: one real Label Studio (the session's `label_studio`), one
prefloop deployment (Redis, `prefloop serve`, `prefloop worker`) shared by the loop and browser
tests, and projects created and connected through Label Studio's API exactly as a user does."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from prefloop.label_config import LabelConfig, load_label_config, parse_label_config
from prefloop.text import has_answers
from tests.conftest import OUTPUT_DIR
from tests.support.stack import Stack


def keep_logs(stack: Stack, name: str) -> None:
    """Copy the processes' logs next to the screenshots, so a CI failure can be read afterwards."""
    out = OUTPUT_DIR / "e2e" / name
    out.mkdir(parents=True, exist_ok=True)
    for log in ("serve.log", "worker.log"):
        if (stack.base / log).exists():
            shutil.copy(stack.base / log, out / log)


@pytest.fixture(scope="session")
def stack(label_studio, tiny_model_dir, tmp_path_factory):
    """Redis, the backend and a worker, on private ports, pointed at the session's Label Studio."""
    s = Stack(tmp_path_factory.mktemp("stack"), label_studio, tiny_model_dir).start()
    yield s
    s.stop()
    keep_logs(s, "stack")


def create_project(label_studio, stack: Stack, title: str) -> int:
    """Create a Pairwise project and connect the backend: LS calls /health and /setup and creates
    the project webhook."""
    project_id = label_studio.create_project(load_label_config("pairwise"), title=f"{title} {uuid.uuid4().hex[:6]}")
    label_studio.connect_backend(project_id, stack.url, title="prefloop")
    return project_id


@pytest.fixture(scope="module")
def new_project(label_studio, stack) -> Callable[[str], int]:
    return lambda title: create_project(label_studio, stack, title)


def prompt_tasks(prompts: list[str]) -> list[dict]:
    """Prompt-only tasks as users import them: the answer keys present and empty (LS checks that
    every field the label config names exists)."""
    return [{"prompt": p, "answer1": "", "answer2": ""} for p in prompts]


PAIRWISE = parse_label_config(load_label_config("pairwise"))


def filled(task: dict, config: LabelConfig = PAIRWISE) -> bool:
    return has_answers(task["data"], config)


def wait_filled(
    label_studio, stack: Stack, project_id: int, count: int, timeout: float = 120, config: LabelConfig = PAIRWISE
) -> list[dict]:
    """Wait until `count` tasks of the project carry their answers (both of a pair, or the List of a
    ranking project's `config`); returns all tasks."""

    def done():
        tasks = label_studio.tasks(project_id)
        return tasks if sum(filled(t, config) for t in tasks) >= count else None

    return stack.wait_for(done, timeout, f"{count} tasks of project {project_id} with their answers")


@pytest.fixture
def screenshots(output_dir) -> Path:
    out = output_dir / "e2e"
    out.mkdir(parents=True, exist_ok=True)
    return out
