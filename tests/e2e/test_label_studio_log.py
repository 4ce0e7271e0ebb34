"""Normal operation leaves no ERROR in Label Studio's log. Before the first reward model, opening a
task makes Label Studio call /predict (the task has no prediction yet); Label Studio 1.23.2 logs
"ML backend returns an incorrect prediction" (label_studio/ml/models.py) for every entry of the
answer without a `result`, and "ML backend returns an incorrect response" for an empty `results`."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.e2e.conftest import prompt_tasks, wait_filled

BAD = ("ML backend returns an incorrect", "Number of tasks and responses are not equal", "Error occurred")


def label_studio_log(label_studio) -> Path:
    """The file Label Studio writes its log to: the fixture's own, or (a server reused through
    PREFLOOP_TEST_LS_PORT) whatever the process listening on that port has as stdout."""
    if label_studio.proc is not None:
        return label_studio.data_dir / "label-studio.log"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if any(a.endswith(b"label-studio") for a in argv) and str(label_studio.port).encode() in argv:
                return Path(os.readlink(f"/proc/{pid}/fd/1"))
        except OSError:
            continue
    raise AssertionError(f"no readable log of the Label Studio on port {label_studio.port}")


def read_from(log: Path, start: int) -> str:
    time.sleep(1)  # Label Studio writes its log from the request thread; give the last line a moment
    with open(log, "rb") as fh:
        fh.seek(start)
        return fh.read().decode(errors="replace")


class EntryWithoutResult(BaseHTTPRequestHandler):
    """A backend that answers /predict with an entry lacking `result` (what prefloop did before
    the first reward model): the control that shows this test reads the log Label Studio writes."""

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._json({"status": "UP"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        predict = {"results": [{"model_version": "control"}]}
        self._json(predict if self.path == "/predict" else {"model_version": "control"})

    def log_message(self, *args):
        pass


def test_the_log_read_here_shows_label_studios_error_for_an_entry_without_result(label_studio):
    log = label_studio_log(label_studio)
    server = ThreadingHTTPServer(("127.0.0.1", 0), EntryWithoutResult)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from prefloop.label_config import load_label_config

        project = label_studio.create_project(load_label_config("pairwise"), title="log control")
        label_studio.connect_backend(project, f"http://127.0.0.1:{server.server_address[1]}", title="control")
        label_studio.import_tasks(project, [{"prompt": "p", "answer1": "a", "answer2": "b"}])
        task = label_studio.tasks(project)[0]
        start = log.stat().st_size
        label_studio.api("GET", f"/api/tasks/{task['id']}", params={"project": project})
        assert "ML backend returns an incorrect prediction" in read_from(log, start)
    finally:
        server.shutdown()


def test_tasks_opened_before_the_first_reward_model_log_no_error(new_project, stack, label_studio):
    log = label_studio_log(label_studio)
    project = new_project("no errors")
    label_studio.import_tasks(project, prompt_tasks([f"Log prompt {i}: name a colour." for i in range(3)]))
    tasks = wait_filled(label_studio, stack, project, 3)
    assert stack.current(project)["reward"] is None, "this is about the time before the first reward model"
    serve_log = stack.base / "serve.log"  # the backend's access log
    start, predicts = log.stat().st_size, serve_log.read_text(errors="replace").count("POST /predict")
    for task in tasks:  # what the browser does when an annotator opens a task
        opened = label_studio.api("GET", f"/api/tasks/{task['id']}", params={"project": project})
        assert opened["data"]["answer1"]
    written = read_from(log, start)
    assert serve_log.read_text(errors="replace").count("POST /predict") > predicts, "Label Studio called /predict"
    errors = [line for line in written.splitlines() if any(bad in line for bad in BAD)]
    assert not errors, "Label Studio logged errors for tasks opened before the first reward model:\n" + "\n".join(
        errors
    )
