"""An annotator in a real browser: Debian's Chromium driven by Playwright (never `playwright
install`) through Label Studio's own UI, on a project prefloop filled and trained."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import prompt_tasks, wait_filled
from worker.reward import RewardTrainConfig

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SELECTED = "rgb(39, 174, 96)"  # label_config/pairwise.xml's selectionStyle background
PROMPTS = [f"Browser prompt {i}: what makes a good {topic}?" for i, topic in enumerate(
    ["breakfast", "holiday", "book", "friend", "teacher", "garden", "song", "city", "game", "walk", "film"])]


@pytest.fixture(scope="module")
def trained_project(new_project, stack, label_studio) -> int:
    """A project with answers, a reward model trained from API annotations, and its predictions."""
    project = new_project("e2e browser")
    label_studio.import_tasks(project, prompt_tasks(PROMPTS))
    tasks = wait_filled(label_studio, stack, project, len(PROMPTS))
    for i, task in enumerate(tasks[:RewardTrainConfig().min_pairs]):
        label_studio.annotate(task["id"], "left" if i % 2 else "right")
    stack.wait_version(project, "reward", None, 180)
    stack.wait_version(project, "policy", None, 300)  # PPO runs behind it; let the model_version settle
    label_studio.retrieve_predictions(project)
    return project


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def log_in(page, label_studio, screenshots) -> None:
    page.goto(f"{label_studio.url}/user/login/")
    page.fill("input[name=email]", label_studio.email)
    page.fill("input[name=password]", label_studio.password)
    page.screenshot(path=str(screenshots / "01-login.png"))
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/user/login" not in url, timeout=30_000)


def open_task(page, label_studio, project: int, prompt: str):
    """Open the task from the Data Manager, as an annotator does; returns the Submit button."""
    page.goto(f"{label_studio.url}/projects/{project}/data")
    page.locator(".lsf-table__row-wrapper").filter(has_text=prompt).first.click()
    submit = page.get_by_role("button", name="Submit")
    submit.wait_for(timeout=60_000)
    answer_boxes(page).nth(1).wait_for(timeout=30_000)
    return submit


def answer_boxes(page):
    """The two answer objects inside the labeling area (not the Data Manager's table)."""
    return page.locator(".answers .answer-box > div")


def test_annotator_sees_the_pre_selection_chooses_the_other_answer_and_prefloop_gets_it(
        trained_project, browser, stack, label_studio, screenshots):
    """Log in, open a task: prompt, both answers and the reward model's pick are shown; choosing the
    other answer and submitting reaches prefloop as a webhook that queues training."""
    project = trained_project
    task = next(t for t in label_studio.tasks(project) if not t["annotations"])
    pred = [p for p in label_studio.predictions(task["id"]) if p["result"]][-1]
    predicted = pred["result"][0]["value"]["selected"]
    other = "left" if predicted == "right" else "right"

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, label_studio, screenshots)
    submit = open_task(page, label_studio, project, task["data"]["prompt"])
    boxes = answer_boxes(page)
    page.screenshot(path=str(screenshots / "02-task-with-pre-selection.png"))

    labeling = page.locator(".lsf-richtext__line")
    assert labeling.filter(has_text=task["data"]["prompt"]).count() >= 1
    for side, key in (("left", "answer1"), ("right", "answer2")):
        box = boxes.nth(0 if side == "left" else 1)
        assert box.inner_text().strip() == task["data"][key].strip(), f"{side} answer not shown as in LS"
        is_selected = SELECTED in (box.get_attribute("style") or "")
        assert is_selected == (side == predicted), f"the model picked {predicted}; {side} selected={is_selected}"

    t0 = time.time()
    boxes.nth(0 if other == "left" else 1).click()
    page.wait_for_function(
        "([el, color]) => (el.getAttribute('style') || '').includes(color)",
        arg=[boxes.nth(0 if other == "left" else 1).element_handle(), SELECTED], timeout=10_000)
    submit.click()
    try:
        page.get_by_text("Annotation saved successfully", exact=True).first.wait_for(timeout=30_000)
    finally:
        page.screenshot(path=str(screenshots / "03-submitted.png"))

    saved = label_studio.tasks(project)
    annotation = next(t for t in saved if t["id"] == task["id"])["annotations"][-1]
    assert annotation["result"][0]["value"]["selected"] == other
    job = stack.wait_job(project, "train_reward", lambda j: j["reason"] == "ANNOTATION_CREATED"
                         and (j["enqueued_at"] or "") >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 - 1)),
                         30, "a training job queued by the browser's annotation")
    assert job["status"] in ("queued", "scheduled", "started", "finished")

    page.goto(f"{stack.url}/status?project={project}")
    current = stack.current(project)
    assert page.locator(f"#reward-{project} .version").inner_text() == current["reward"]
    assert page.locator(f"#policy-{project} .version").inner_text() == current["policy"]
    assert page.locator(f"#reward-{project} img").count() >= 1, "the reward model's curve is shown"
    page.screenshot(path=str(screenshots / "04-status.png"), full_page=True)
    page.close()
