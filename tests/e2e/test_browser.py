"""An annotator in a real browser: Debian's Chromium driven by Playwright (never `playwright
install`) through Label Studio's own UI, on a project prefloop created (`prefloop init`'s code),
filled and trained. Screenshots land in test-output/e2e/."""

from __future__ import annotations

import time
import uuid

import pytest

from cli.commands.init import first_start
from prefloop.settings import Settings
from tests.e2e.conftest import filled, prompt_tasks, wait_filled
from worker.reward import RewardTrainConfig

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SELECTED = "rgb(39, 174, 96)"  # label_config/pairwise.xml's selectionStyle background
PROMPTS = [
    f"Browser prompt {i}: what makes a good {topic}?"
    for i, topic in enumerate(
        ["breakfast", "holiday", "book", "friend", "teacher", "garden", "song", "city", "game", "walk", "film"]
    )
]


@pytest.fixture(scope="module")
def trained_project(new_project, stack, label_studio) -> int:
    """A project with answers, a reward model trained from API annotations, and the predictions the
    worker pushed (nobody presses "Retrieve Predictions")."""
    project = init_project(label_studio, stack.url, "e2e browser")
    label_studio.import_tasks(project, prompt_tasks(PROMPTS))
    tasks = wait_filled(label_studio, stack, project, len(PROMPTS))
    for i, task in enumerate(tasks[: RewardTrainConfig().min_pairs]):
        label_studio.annotate(task["id"], "left" if i % 2 else "right")
    stack.wait_version(project, "reward", None, 180)
    stack.wait_version(project, "policy", None, 300)  # PPO runs behind it; let the model_version settle
    wait_pushed(label_studio, stack, project)
    return project


def wait_pushed(label_studio, stack, project: int) -> list[dict]:
    """Until every filled task holds a prediction of the serving model_version (what /setup answers)
    and the project's model_version is that version; returns the tasks."""

    def pushed():
        version = stack.model_version(project)
        tasks = [t for t in label_studio.tasks(project) if filled(t)]
        ok = label_studio.api("GET", f"/api/projects/{project}")["model_version"] == version and all(
            any(p["model_version"] == version and p["result"] for p in t["predictions"]) for t in tasks
        )
        return tasks if ok else None

    return stack.wait_for(pushed, 120, f"the worker's predictions for every filled task of project {project}")


def init_project(label_studio, backend_url: str, title: str, label_config: str = "pairwise") -> int:
    """A project made as `prefloop init` makes it (empty annotations refused, annotators' Data
    Manager tab), connected to the backend at `backend_url`."""
    settings = Settings.from_env(
        {},
        label_studio_url=label_studio.url,
        label_studio_api_key=label_studio.token,
        backend_url=backend_url,
        project_title=f"{title} {uuid.uuid4().hex[:6]}",
    )
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


def shown_text(text: str) -> str:
    """Text as a browser lays it out: innerText turns the tiny model's stray control characters
    ("\\r", runs of spaces) into line breaks and single spaces, so compare word by word."""
    return " ".join(text.split())


def answer_boxes(page):
    """The two answer objects inside the labeling area (not the Data Manager's table)."""
    return page.locator(".answers .answer-box > div")


def is_selected(box) -> bool:
    return SELECTED in (box.get_attribute("style") or "")


def wait_selected(page, box, selected: bool = True) -> None:
    page.wait_for_function(
        "([el, color, want]) => (el.getAttribute('style') || '').includes(color) === want",
        arg=[box.element_handle(), SELECTED, selected],
        timeout=10_000,
    )


def wait_saved(page, screenshots, name: str) -> None:
    try:
        page.get_by_text("Annotation saved successfully", exact=True).first.wait_for(timeout=30_000)
    finally:
        page.screenshot(path=str(screenshots / name))


def test_every_task_shows_the_pushed_pick_and_the_least_certain_tab_and_label_all_follow_the_score(
    trained_project, browser, stack, label_studio, screenshots
):
    """Without Retrieve Predictions, the Data Manager's "Least certain first" tab (made by `prefloop
    init`'s code) lists every filled task with its prediction score, lowest first, and "Label All
    Tasks" opens the unlabeled task the reward model is least sure about."""
    from cli.commands.init import LEAST_CERTAIN_TAB

    project = trained_project
    tasks = wait_pushed(label_studio, stack, project)
    assert len(tasks) == len(PROMPTS)
    [tab] = [
        v
        for v in label_studio.api("GET", "/api/dm/views", params={"project": project})
        if v["data"].get("title") == LEAST_CERTAIN_TAB
    ]
    by_score = sorted(tasks, key=lambda t: t["predictions_score"])
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, label_studio, screenshots)
    page.goto(f"{label_studio.url}/projects/{project}/data?tab={tab['id']}")
    rows = page.locator(".lsf-table__row-wrapper")
    rows.nth(len(tasks) - 1).wait_for(timeout=60_000)
    page.screenshot(path=str(screenshots / "08-least-certain-tab.png"))
    assert page.get_by_text(LEAST_CERTAIN_TAB).count() >= 1
    shown = [next(p for p in PROMPTS if p in rows.nth(i).inner_text()) for i in range(rows.count())]
    assert shown == [t["data"]["prompt"] for t in by_score], "the tab lists the least certain first"
    headers = page.locator(".lsf-table-head").first.inner_text()
    assert "Prediction score" in headers, headers

    page.get_by_role("button", name="Label All Tasks").click()
    page.get_by_test_id("bottombar-submit-button").wait_for(timeout=60_000)  # the stream adds a second one
    answer_boxes(page).nth(1).wait_for(timeout=30_000)
    page.screenshot(path=str(screenshots / "09-label-all-least-certain.png"))
    least = next(t for t in by_score if not t["annotations"])
    labeling = page.locator(".lsf-richtext__line")
    assert labeling.filter(has_text=least["data"]["prompt"]).count() >= 1, (
        f"Label All Tasks opened another task than the least certain one ({least['predictions_score']})"
    )
    page.close()


def move_to_top(page, items, index: int) -> None:
    """Move the `index`-th Ranker item to the top with the keyboard, as react-beautiful-dnd (the
    Ranker's drag-and-drop) lets annotators do: focus the card, Space lifts it, each ArrowUp moves
    it one place, Space drops it. Each key is one discrete step, so a busy machine cannot turn the
    drag into a click the way a mouse drag's timing can."""
    items.nth(index).focus()
    page.keyboard.press("Space")
    page.wait_for_timeout(300)
    for _ in range(index):
        page.keyboard.press("ArrowUp")
        page.wait_for_timeout(300)
    page.keyboard.press("Space")


# The order the Ranker shows, by the item ids it renders (data-ranker-id): the tiny model's answers
# hold replacement and control characters that innerText does not give back as stored.
RANKED_IDS = "() => [...document.querySelectorAll('.htx-ranker-item')].map((el) => el.dataset.rankerId)"


def test_a_ranking_annotated_in_the_browser_becomes_the_pairs_it_implies(stack, browser, label_studio, screenshots):
    """label_config/ranking.xml in Label Studio 1.23.2: the worker writes ANSWERS_PER_PROMPT (3)
    answers into the List, the annotator moves the last one to the top and submits, and the saved
    ranking becomes its three pairs, in prefloop's conversion and in the training job it queues."""
    from prefloop.label_config import parse_label_config
    from prefloop.preferences import tasks_to_pairs

    project = init_project(label_studio, stack.url, "e2e ranking", label_config="ranking")
    prompt = "Ranking prompt: what makes a good morning?"
    label_studio.import_tasks(project, [{"prompt": prompt, "answers": []}])
    [task] = stack.wait_for(
        lambda: [t for t in label_studio.tasks(project) if len(t["data"]["answers"]) == 3] or None,
        120,
        "three answers written into the ranking task",
    )
    items = task["data"]["answers"]
    assert len({i["body"] for i in items}) == 3 and [i["id"] for i in items] == ["answer1", "answer2", "answer3"]

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, label_studio, screenshots)
    page.goto(f"{label_studio.url}/projects/{project}/data")
    page.locator(".lsf-table__row-wrapper").filter(has_text=prompt).first.click()
    submit = page.get_by_role("button", name="Submit")
    submit.wait_for(timeout=60_000)
    shown = page.locator(".htx-ranker-item")
    shown.nth(2).wait_for(timeout=30_000)
    page.screenshot(path=str(screenshots / "12-ranking-task.png"))
    assert page.evaluate(RANKED_IDS) == ["answer1", "answer2", "answer3"]
    move_to_top(page, shown, 2)
    try:
        page.wait_for_function(f"({RANKED_IDS})().join() === 'answer3,answer1,answer2'", timeout=10_000)
    finally:
        page.screenshot(path=str(screenshots / "13-ranking-dragged.png"))
    assert page.evaluate(RANKED_IDS) == ["answer3", "answer1", "answer2"]
    t0 = time.time()
    submit.click()
    wait_saved(page, screenshots, "14-ranking-submitted.png")
    page.close()

    saved = label_studio.tasks(project)
    [region] = saved[0]["annotations"][-1]["result"]
    assert region["type"] == "ranker" and region["value"]["ranker"]["rank"] == ["answer3", "answer1", "answer2"]
    config = parse_label_config(label_studio.api("GET", f"/api/projects/{project}")["label_config"])
    pairs, summary = tasks_to_pairs(saved, config)
    body = {i["id"]: i["body"] for i in items}
    assert {(p.chosen, p.rejected) for p in pairs} == {
        (body["answer3"], body["answer1"]),
        (body["answer3"], body["answer2"]),
        (body["answer1"], body["answer2"]),
    }, summary.describe()
    job = stack.wait_job(
        project,
        "train_reward",
        lambda j: (
            j["status"] == "finished"
            and (j["enqueued_at"] or "") >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 - 1))
        ),
        60,
        "the training job the ranking queued",
    )
    assert job["result"]["pairs"] == 3, job["result"]


def test_a_ranking_task_opens_in_the_reward_models_order_with_its_confidence(stack, browser, label_studio, screenshots):
    """Once a ranking project has a reward model, the worker writes its order of each task's answers
    as a Ranker prediction (no Retrieve Predictions): a task opens in that order, best first, and its
    confidence is the Data Manager's prediction score. The task's answers are imported worst first
    by the served model's own rewards (/reward), so the order shown must be the model's, reversed."""
    from prefloop.label_config import load_label_config, parse_label_config, ranking_items

    project = init_project(label_studio, stack.url, "e2e ranked predictions", label_config="ranking")
    prompts = [f"Ranked prompt {i}: what makes a good {t}?" for i, t in enumerate(["day", "meal", "trip", "talk"])]
    label_studio.import_tasks(project, [{"prompt": p, "answers": []} for p in prompts])
    schema = load_label_config("ranking")
    tasks = wait_filled(label_studio, stack, project, len(prompts), config=parse_label_config(schema))
    region = {"from_name": "rank", "to_name": "answers", "type": "ranker"}
    for task in tasks:  # MIN_NEW_ANNOTATIONS=4 rankings: 12 pairs, a reward model, then the policy
        order = {"rank": ["answer1", "answer2", "answer3"]}
        label_studio.api(
            "POST", f"/api/tasks/{task['id']}/annotations", json={"result": [{**region, "value": {"ranker": order}}]}
        )
    stack.wait_version(project, "reward", None, 180)
    stack.wait_version(project, "policy", None, 300)

    prompt = "Ranked prompt 9: which answer reads best?"
    answers = [a["body"] for t in tasks for a in t["data"]["answers"]][:3]
    scored = stack.post(
        "/reward", {"project": project, "items": [{"prompt": prompt, "response": a} for a in answers]}
    ).json()["rewards"]
    worst_first = [a for _, a in sorted(zip(scored, answers, strict=True))]
    label_studio.import_tasks(project, [{"prompt": prompt, "answers": ranking_items(worst_first)}])

    def predicted():
        version = stack.model_version(project, schema)
        [task] = [t for t in label_studio.tasks(project) if t["data"]["prompt"] == prompt]
        found = [p for p in task["predictions"] if p["model_version"] == version and p["result"]]
        return (task, found[0]) if found else None

    task, prediction = stack.wait_for(predicted, 120, "the worker's Ranker prediction for the new task")
    [pred_region] = prediction["result"]
    assert pred_region["type"] == "ranker" and pred_region["value"]["ranker"]["rank"] == [
        "answer3",
        "answer2",
        "answer1",
    ]
    assert 0.5 <= prediction["score"] <= 1 and task["predictions_score"] == pytest.approx(prediction["score"], abs=1e-3)

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, label_studio, screenshots)
    page.goto(f"{label_studio.url}/projects/{project}/data")
    page.locator(".lsf-table__row-wrapper").filter(has_text=prompt).first.click()
    page.get_by_role("button", name="Submit").wait_for(timeout=60_000)
    page.locator(".htx-ranker-item").nth(2).wait_for(timeout=30_000)
    page.screenshot(path=str(screenshots / "15-ranking-predicted-order.png"))
    assert page.evaluate(RANKED_IDS) == ["answer3", "answer2", "answer1"], "the task opens in the model's order"
    page.close()


def test_a_confirmed_pre_selection_is_saved_as_that_choice_never_as_nothing(
    trained_project, browser, label_studio, screenshots
):
    """Label Studio's Pairwise unselects an answer clicked a second time, also the one the reward
    model pre-selected; prefloop's projects refuse empty annotations, so Submit is disabled while
    nothing is chosen, a second click chooses it again, and the saved result is that choice."""
    project = trained_project
    task = next(
        t
        for t in label_studio.tasks(project)
        if not t["annotations"] and any(p["result"] for p in label_studio.predictions(t["id"]))
    )
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
    trained_project, browser, stack, label_studio, screenshots
):
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
        assert shown_text(box.inner_text()) == shown_text(task["data"][key]), f"{side} answer not shown as in LS"
        assert is_selected(box) == (side == predicted), (
            f"the model picked {predicted}; {side} selected={is_selected(box)}"
        )

    t0 = time.time()
    boxes.nth(0 if other == "left" else 1).click()
    wait_selected(page, boxes.nth(0 if other == "left" else 1))
    submit.click()
    wait_saved(page, screenshots, "03-submitted.png")

    saved = label_studio.tasks(project)
    annotation = next(t for t in saved if t["id"] == task["id"])["annotations"][-1]
    assert annotation["result"][0]["value"]["selected"] == other
    job = stack.wait_job(
        project,
        "train_reward",
        lambda j: (
            j["reason"] == "ANNOTATION_CREATED"
            and (j["enqueued_at"] or "") >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 - 1))
        ),
        30,
        "a training job queued by the browser's annotation",
    )
    assert job["status"] in ("queued", "scheduled", "started", "finished")

    page.goto(f"{stack.url}/status?project={project}")
    current = stack.current(project)
    assert page.locator(f"#reward-{project} .version").inner_text() == current["reward"]
    assert page.locator(f"#policy-{project} .version").inner_text() == current["policy"]
    assert page.locator(f"#reward-{project} img").count() >= 1, "the reward model's curve is shown"
    page.screenshot(path=str(screenshots / "04-status.png"), full_page=True)
    page.close()


LONG = "A long answer that wraps over several lines of the card. " * 6 + "\ufffd\x01" * 8 + "unbroken" * 30
WIDTHS = (1024, 1366, 1920)


@pytest.mark.parametrize("label_config", ["pairwise", "pairwise_chat"])
def test_answers_stay_side_by_side_the_selection_colours_the_whole_card_and_annotators_see_no_json_column(
    label_config, browser, label_studio, screenshots
):
    """At common widths the left answer is left of the right one on the same row (also with long,
    unbroken model output), the chosen card is green edge to edge, and the Data Manager's first
    tab (made by `prefloop init`'s code) hides the wide `prefloop` column."""
    from cli.commands.init import annotator_settings
    from prefloop.label_config import load_label_config
    from prefloop.labelstudio import LabelStudioClient

    project = label_studio.create_project(
        load_label_config(label_config), title=f"layout {label_config} {uuid.uuid4().hex[:6]}"
    )
    client = LabelStudioClient(
        Settings.from_env({}, label_studio_url=label_studio.url, label_studio_api_key=label_studio.token)
    )
    annotator_settings(client, client.get_project(project))
    shown = (
        {"prompt": "Layout prompt?"}
        if label_config == "pairwise"
        else {"messages": [{"role": "user", "content": "Layout prompt?"}]}
    )
    pick = {"from_name": "pw", "to_name": "pw", "type": "pairwise", "value": {"selected": "left"}}
    label_studio.api(
        "POST",
        f"/api/projects/{project}/import",
        json=[
            {
                "data": {
                    **shown,
                    "answer1": LONG,
                    "answer2": "A short right answer.",
                    "prefloop": {"policy": "pi-base", "note": "x" * 200},
                },
                "predictions": [{"model_version": "rm-test", "score": 0.9, "result": [pick]}],
            }
        ],
    )

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
        assert all(abs(left[k] - card[k]) <= 1 for k in ("x", "y", "width", "height")), (
            f"{width}px: the selection ({left}) does not cover the card ({card})"
        )
        assert is_selected(boxes.nth(0)) and not is_selected(boxes.nth(1))
        assert boxes.nth(0).evaluate("el => getComputedStyle(el).backgroundColor") == SELECTED
    page.close()
