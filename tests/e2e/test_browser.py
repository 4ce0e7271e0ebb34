"""An annotator in a real browser: Debian's Chromium driven by Playwright (never `playwright
install`) through Label Studio's own UI, on a project prefloop created (`prefloop init`'s code),
filled and trained. Screenshots land in test-output/e2e/."""

from __future__ import annotations

import time
import uuid

import pytest

from cli.commands.init import first_start
from prefloop.settings import Settings
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
    project = init_project(label_studio, stack.url, "e2e browser")
    label_studio.import_tasks(project, prompt_tasks(PROMPTS))
    tasks = wait_filled(label_studio, stack, project, len(PROMPTS))
    for i, task in enumerate(tasks[:RewardTrainConfig().min_pairs]):
        label_studio.annotate(task["id"], "left" if i % 2 else "right")
    stack.wait_version(project, "reward", None, 180)
    stack.wait_version(project, "policy", None, 300)  # PPO runs behind it; let the model_version settle
    label_studio.retrieve_predictions(project)
    return project


def init_project(label_studio, backend_url: str, title: str, label_config: str = "pairwise") -> int:
    """A project made as `prefloop init` makes it (empty annotations refused, annotators' Data
    Manager tab), connected to the backend at `backend_url`."""
    settings = Settings.from_env({}, label_studio_url=label_studio.url, label_studio_api_key=label_studio.token,
                                 backend_url=backend_url, project_title=f"{title} {uuid.uuid4().hex[:6]}")
    return first_start(settings, label_config=label_config).projects[0].id


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


def is_selected(box) -> bool:
    return SELECTED in (box.get_attribute("style") or "")


def wait_selected(page, box, selected: bool = True) -> None:
    page.wait_for_function("([el, color, want]) => (el.getAttribute('style') || '').includes(color) === want",
                           arg=[box.element_handle(), SELECTED, selected], timeout=10_000)


def wait_saved(page, screenshots, name: str) -> None:
    try:
        page.get_by_text("Annotation saved successfully", exact=True).first.wait_for(timeout=30_000)
    finally:
        page.screenshot(path=str(screenshots / name))


def test_a_confirmed_pre_selection_is_saved_as_that_choice_never_as_nothing(
        trained_project, browser, label_studio, screenshots):
    """Label Studio's Pairwise unselects an answer clicked a second time, also the one the reward
    model pre-selected; prefloop's projects refuse empty annotations, so Submit is disabled while
    nothing is chosen, a second click chooses it again, and the saved result is that choice."""
    project = trained_project
    task = next(t for t in label_studio.tasks(project)
                if not t["annotations"] and any(p["result"] for p in label_studio.predictions(t["id"])))
    predicted = [p for p in label_studio.predictions(task["id"]) if p["result"]][-1]["result"][0]["value"]["selected"]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, label_studio, screenshots)
    submit = open_task(page, label_studio, project, task["data"]["prompt"])
    box = answer_boxes(page).nth(0 if predicted == "left" else 1)
    assert is_selected(box) and submit.is_enabled()

    box.click()  # the annotator agrees with the model and "confirms" its pick: Label Studio unselects it
    wait_selected(page, box, False)
    page.screenshot(path=str(screenshots / "05-confirm-click-unselected-submit-disabled.png"))
    assert submit.is_disabled(), "an empty choice must not be submittable"
    page.keyboard.press("Control+Enter")  # Label Studio's submit hotkey is refused as well
    time.sleep(1)
    assert not [a for a in label_studio.tasks(project) if a["id"] == task["id"] and a["annotations"]]

    box.click()
    wait_selected(page, box, True)
    page.screenshot(path=str(screenshots / "06-confirm-selected.png"))
    assert submit.is_enabled()
    submit.click()
    wait_saved(page, screenshots, "07-confirm-submitted.png")
    annotation = next(t for t in label_studio.tasks(project) if t["id"] == task["id"])["annotations"][-1]
    assert [r["value"]["selected"] for r in annotation["result"] if r["type"] == "pairwise"] == [predicted]
    page.close()


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
        assert is_selected(box) == (side == predicted), \
            f"the model picked {predicted}; {side} selected={is_selected(box)}"

    t0 = time.time()
    boxes.nth(0 if other == "left" else 1).click()
    wait_selected(page, boxes.nth(0 if other == "left" else 1))
    submit.click()
    wait_saved(page, screenshots, "03-submitted.png")

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


LONG = ("A long answer that wraps over several lines of the card. " * 6 + "\ufffd\x01" * 8 + "unbroken" * 30)
WIDTHS = (1024, 1366, 1920)


@pytest.mark.parametrize("label_config", ["pairwise", "pairwise_chat"])
def test_answers_stay_side_by_side_the_selection_colours_the_whole_card_and_annotators_see_no_json_column(
        label_config, browser, label_studio, screenshots):
    """At common widths the left answer is left of the right one on the same row (also with long,
    unbroken model output), the chosen card is green edge to edge, and the Data Manager's first
    tab (made by `prefloop init`'s code) hides the wide `prefloop` column."""
    from cli.commands.init import annotator_settings
    from prefloop.label_config import load_label_config
    from prefloop.labelstudio import LabelStudioClient

    project = label_studio.create_project(load_label_config(label_config),
                                          title=f"layout {label_config} {uuid.uuid4().hex[:6]}")
    client = LabelStudioClient(Settings.from_env({}, label_studio_url=label_studio.url,
                                                 label_studio_api_key=label_studio.token))
    annotator_settings(client, client.get_project(project))
    shown = ({"prompt": "Layout prompt?"} if label_config == "pairwise"
             else {"messages": [{"role": "user", "content": "Layout prompt?"}]})
    pick = {"from_name": "pw", "to_name": "pw", "type": "pairwise", "value": {"selected": "left"}}
    label_studio.api("POST", f"/api/projects/{project}/import", json=[{
        "data": {**shown, "answer1": LONG, "answer2": "A short right answer.",
                 "prefloop": {"policy": "pi-base", "note": "x" * 200}},
        "predictions": [{"model_version": "rm-test", "score": 0.9, "result": [pick]}]}])

    page = browser.new_page(viewport={"width": WIDTHS[0], "height": 900})
    log_in(page, label_studio, screenshots)
    page.goto(f"{label_studio.url}/projects/{project}/data")
    page.locator(".lsf-table__row-wrapper").first.wait_for(timeout=60_000)
    headers = page.locator(".lsf-table-head").first.inner_text().split("\n")
    page.screenshot(path=str(screenshots / f"10-{label_config}-data-manager.png"))
    assert "answer1" in headers and "answer2" in headers, headers
    assert "prefloop" not in headers, f"the prefloop JSON column is shown: {headers}"

    page.locator(".lsf-table__row-wrapper").first.click()
    page.get_by_role("button", name="Submit").wait_for(timeout=60_000)
    boxes = answer_boxes(page)
    boxes.nth(1).wait_for(timeout=30_000)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(500)
        page.screenshot(path=str(screenshots / f"11-{label_config}-{width}px.png"))
        left, right = boxes.nth(0).bounding_box(), boxes.nth(1).bounding_box()
        row = page.locator(".answers").bounding_box()
        assert abs(left["y"] - right["y"]) < 2 and left["x"] + left["width"] <= right["x"], (width, left, right)
        assert min(left["width"], right["width"]) > 0.4 * row["width"], f"{width}px: the answers do not share the row"
        assert right["x"] + right["width"] <= row["x"] + row["width"] + 1, f"{width}px: the right answer overflows"
        card = page.locator(".answers .answer-box").nth(0).bounding_box()
        assert all(abs(left[k] - card[k]) <= 1 for k in ("x", "y", "width", "height")), \
            f"{width}px: the selection ({left}) does not cover the card ({card})"
        assert is_selected(boxes.nth(0)) and not is_selected(boxes.nth(1))
        assert boxes.nth(0).evaluate("el => getComputedStyle(el).backgroundColor") == SELECTED
    page.close()
