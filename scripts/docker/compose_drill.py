"""The README's docker compose deployment, driven for real (run by scripts/test-compose.sh inside the
deploy folder, with DOCKER_HOST pointing at the test's own daemon). Standard library only.

    compose_drill.py write-env --ls-port P --backend-port Q [--set NAME=VALUE ...]
        .env from .env.example as the README says: the REQUIRED values, the cpu profile, the tiny
        offline model, private host ports, plus the given NAME=VALUE lines.
    compose_drill.py drill --ls-port P --backend-port Q --summary FILE
        the tiny model into the cache volume, `docker compose up -d`, `init` done; prompt-only
        tasks imported through Label Studio's API and filled; pairwise annotations; a reward
        version in the backend's /versions and /setup; the upgrade drill (a code change, `docker
        compose build`, `up -d`: init changes nothing, versions survive); the worker stopped
        mid-job and started again: nothing half-published, the job retried and published.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PASSWORD = "compose-test-pw"
TOKEN = "c0ffee" + "0123456789abcdef" * 2 + "01"  # 40 hex characters: the admin's legacy token
TINY_DIR = "/data/hf/tiny-gpt2"  # in the hf-cache volume, which every prefloop container mounts
WORKER = "worker-cpu"  # the cpu profile's worker
PROMPTS = [
    f"Compose prompt {i}: tell me about {w}."
    for i, w in enumerate(
        ["rivers", "bread", "trains", "owls", "snow", "glass", "maps", "bees", "clocks", "kites", "tea", "stone"]
    )
]
ANNOTATIONS = 10  # MIN_NEW_ANNOTATIONS's default: the tenth retrains (and >= the reward model's 8 pairs)


def say(msg: str) -> None:
    print(f"   {msg}", flush=True)


# --- .env ------------------------------------------------------------------------------------------
def write_env(args) -> None:
    values = {
        "COMPOSE_PROFILES": "cpu",
        "TORCH_VARIANT": "cpu",
        "LABEL_STUDIO_PASSWORD": PASSWORD,
        "LABEL_STUDIO_API_KEY": TOKEN,
        "WEBHOOK_SECRET": "compose-drill-webhook-secret",
        "LABEL_STUDIO_PORT": f"127.0.0.1:{args.ls_port}",  # published on loopback only
        "LABEL_STUDIO_PUBLIC_URL": f"http://127.0.0.1:{args.ls_port}",
        "BACKEND_PORT": str(args.backend_port),
        # The tiny offline model (`prefloop tiny-model`), with `prefloop up --tiny`'s settings.
        "BASE_MODEL": TINY_DIR,
        "MAX_NEW_TOKENS": "24",
        # No policy training: PPO on the tiny model takes many minutes on 2 cores, and a reward model
        # on a few pairs can reach any accuracy bar. DPO is queued only after this many annotations.
        "POLICY_TRAINER": "dpo",
        "DPO_MIN_NEW_ANNOTATIONS": "1000",
    }
    for item in args.set or []:
        name, _, value = item.partition("=")
        values[name] = value
    text = Path(".env.example").read_text()
    for name, value in values.items():
        line = f"{name}={value}"
        text, n = re.subn(rf"^(# )?{re.escape(name)}=.*$", lambda _m, line=line: line, text, count=1, flags=re.M)
        if not n:
            raise SystemExit(f".env.example has no line for {name}: the README's .env cannot set it")
    Path(".env").write_text(text)
    shown = ", ".join(f"{k}={v}" for k, v in values.items() if "PASSWORD" not in k and "KEY" not in k)
    say(f".env written from .env.example: {shown}")


# --- docker compose ----------------------------------------------------------------------------------
def compose(*args: str, check: bool = True, capture: bool = False, timeout: float = 900) -> str:
    quiet = ["--progress", "quiet"] if args[0] in ("up", "build", "stop", "start", "kill") else []  # errors still shown
    cmd = ["docker", "compose", *quiet, *args]
    r = subprocess.run(cmd, text=True, capture_output=capture, timeout=timeout)
    if check and r.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed ({r.returncode}){': ' + r.stderr[-3000:] if capture else ''}")
    return r.stdout if capture else ""


def container(service: str) -> str:
    ids = compose("ps", "-a", "-q", service, capture=True).split()
    if not ids:
        raise SystemExit(f"no container for {service}")
    return ids[0]


def inspect(cid: str) -> dict:
    out = subprocess.run(["docker", "inspect", cid], text=True, capture_output=True, check=True).stdout
    return json.loads(out)[0]


def wait_exited(service: str, timeout: float, started_after: str = "") -> tuple[str, str]:
    """Wait until the one-shot `service` ran (after `started_after`) and exited 0; returns (logs, StartedAt)."""
    deadline = time.monotonic() + timeout
    while True:
        cid = container(service)
        state = inspect(cid)["State"]
        if state["Status"] == "exited" and state["StartedAt"] > started_after:
            logs = subprocess.run(
                ["docker", "logs", "--since", state["StartedAt"], cid],
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            ).stdout
            if state["ExitCode"] != 0:
                raise SystemExit(f"{service} exited {state['ExitCode']}:\n{logs[-3000:]}")
            return logs, state["StartedAt"]
        if time.monotonic() > deadline:
            raise SystemExit(f"{service} did not finish within {timeout:.0f}s (state {state['Status']})")
        time.sleep(1)


def in_backend(code: str) -> str:
    return compose("exec", "-T", "backend", "python", "-c", code, capture=True).strip()


def ls_dir(path: str) -> list[str]:
    out = compose("exec", "-T", "backend", "sh", "-c", f"ls -A {path} 2>/dev/null || true", capture=True)
    return out.split()


class HTTPFailure(OSError):
    """An HTTP error answer, with its body (wait_for retries it like a refused connection)."""


# --- HTTP ----------------------------------------------------------------------------------------------
def http(method: str, url: str, body=None, token: str | None = None, timeout: float = 30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:  # say what the server answered
        raise HTTPFailure(f"{method} {url}: {exc.code} {exc.read()[:2000].decode(errors='replace')}") from None


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last})" if last else ""))


class Stack:
    def __init__(self, ls_port: int, backend_port: int):
        self.ls = f"http://127.0.0.1:{ls_port}"
        self.backend = f"http://127.0.0.1:{backend_port}"
        self.schemas: dict[int, str] = {}

    def tasks(self, project: int) -> list[dict]:
        out = http("GET", f"{self.ls}/api/tasks?project={project}&page_size=100&fields=all", token=TOKEN)
        return out["tasks"] if isinstance(out, dict) else out

    def versions(self, project: int) -> list[dict]:
        details = http("GET", f"{self.backend}/versions?project={project}")["details"]
        return [d for d in details if d["kind"] == "reward"]

    def serving(self, project: int) -> str:
        if project not in self.schemas:  # Label Studio sends the project's label config with every /setup
            self.schemas[project] = http("GET", f"{self.ls}/api/projects/{project}", token=TOKEN)["label_config"]
        body = {"project": f"{project}.1700000000", "schema": self.schemas[project]}  # as Label Studio sends it
        return http("POST", f"{self.backend}/setup", body)["model_version"]

    def job(self, job_id: str) -> dict:
        return http("GET", f"{self.backend}/jobs/{job_id}")

    def jobs(self, project: int) -> list[dict]:
        return http("GET", f"{self.backend}/jobs?project={project}")["jobs"]

    def idle(self, project: int, timeout: float = 300) -> None:
        active = {"queued", "scheduled", "deferred", "started"}
        wait_for(lambda: not [j for j in self.jobs(project) if j["status"] in active], timeout, "an idle queue")


def filled(task: dict) -> bool:
    return bool(task["data"].get("answer1")) and bool(task["data"].get("answer2"))


def drill(args) -> None:
    s = Stack(args.ls_port, args.backend_port)
    summary: dict = {}

    say(f"the tiny offline model: docker compose run --rm model-download prefloop tiny-model {TINY_DIR}")
    compose("run", "--rm", "-T", "model-download", "prefloop", "tiny-model", TINY_DIR)

    t = time.monotonic()
    compose("up", "-d")
    init_logs, init_started = wait_exited("init", 400)
    summary["stack_up_s"] = round(time.monotonic() - t)
    m = re.search(r"project '.*' \(id (\d+)\): created", init_logs)
    if not m:
        raise SystemExit(f"init did not create a project:\n{init_logs}")
    project = int(m.group(1))
    say(f"stack up, init done in {summary['stack_up_s']}s: project {project} created and connected")
    assert http("GET", f"{s.backend}/health")["status"] == "UP"

    t = time.monotonic()
    prompt_only = [{"prompt": p, "answer1": "", "answer2": ""} for p in PROMPTS]  # the answer keys present, empty
    http("POST", f"{s.ls}/api/projects/{project}/import", prompt_only, token=TOKEN)

    def all_filled():
        tasks = s.tasks(project)
        return tasks if sum(map(filled, tasks)) >= len(PROMPTS) else None

    tasks = wait_for(all_filled, 300, f"{len(PROMPTS)} tasks with both answers")
    summary["tasks"], summary["filled_s"] = len(PROMPTS), round(time.monotonic() - t)
    say(f"{len(PROMPTS)} prompt-only tasks imported and filled by the worker in {summary['filled_s']}s")

    for i, task in enumerate(tasks[:ANNOTATIONS]):
        pick = {"selected": "left" if i % 2 else "right"}
        result = [{"from_name": "pw", "to_name": "pw", "type": "pairwise", "value": pick}]
        http("POST", f"{s.ls}/api/tasks/{task['id']}/annotations", {"result": result}, token=TOKEN)
    summary["annotations"] = ANNOTATIONS
    first = wait_for(lambda: s.versions(project), 300, "a reward version in /versions")[0]["version"]
    serving = s.serving(project)
    if not serving.startswith(first + "+"):
        raise SystemExit(f"/setup answers {serving!r}, not the reward version {first!r}")
    summary["first_version"] = first
    say(f"{ANNOTATIONS} annotations -> reward version {first} in /versions; /setup answers {serving}")
    s.idle(project)

    # --- upgrade: a code change, `docker compose build`, `docker compose up -d` -------------------------
    before = [v["version"] for v in s.versions(project)]
    with open("prefloop/__init__.py", "a") as f:
        f.write("# a code change for the compose test's upgrade drill\n")
    t = time.monotonic()
    compose("build", "backend", capture=True)
    summary["rebuild_s"] = round(time.monotonic() - t)
    compose("up", "-d")
    init_logs, _ = wait_exited("init", 300, started_after=init_started)
    if "nothing to do: everything was already set up" not in init_logs:
        raise SystemExit(f"the second init changed something:\n{init_logs}")
    wait_for(lambda: http("GET", f"{s.backend}/health")["status"] == "UP", 120, "the new backend")
    after = [v["version"] for v in s.versions(project)]
    if after != before or s.serving(project) != serving:
        raise SystemExit(f"versions changed across the upgrade: {before} -> {after}")
    say(f"upgrade: rebuilt in {summary['rebuild_s']}s, containers replaced, init changed nothing, versions: {after}")

    # --- the worker stopped mid-job ---------------------------------------------------------------------
    s.idle(project)
    job_id = in_backend(
        "from prefloop.queue import JobKind, JobQueue\nfrom prefloop.settings import Settings\n"
        f"print(JobQueue(Settings.from_env()).enqueue(JobKind.TRAIN_REWARD, {project}, reason='compose drill', "
        "rate_limited=False, force=True, config={'num_train_epochs': 400, 'early_stopping_patience': 0}).job_id)"
    ).splitlines()[-1]

    def training():
        job = s.job(job_id)
        progress = job.get("progress") or {}
        return job.get("status") == "started" and job.get("stage") == "training" and progress.get("done")

    wait_for(training, 180, "the long reward run under way", interval=0.3)
    stop_t = time.monotonic()
    # SIGKILL at once, as a crash or the OOM killer does. Not `stop -t 3`: SIGTERM lets RQ finish the running
    # job, and on a quiet machine the run got through training and publishing within those 3 s.
    compose("kill", WORKER)
    say(f"docker compose kill {WORKER} while job {job_id} trained ({time.monotonic() - stop_t:.1f}s)")
    job = s.job(job_id)
    if job.get("status") == "finished":
        raise SystemExit("the job finished before the worker stopped: the drill proves nothing (make it longer)")
    listed = [v["version"] for v in s.versions(project)]
    staging = [n for n in ls_dir(f"/data/models/{project}/reward") if n.startswith(".tmp-")]
    if listed != before or s.serving(project) != serving:
        raise SystemExit(f"something was published by the killed run: {before} -> {listed}")
    if not staging:
        raise SystemExit("the killed run left no staging directory: was it really killed mid-training?")
    say(f"nothing half-published: versions {listed}, the killed run's staging dir {staging[-1]} is not listed")

    compose("start", WORKER)
    wait_for(lambda: s.job(job_id).get("status") in ("finished", "failed"), 600, "the retried job to end", interval=1)
    job = s.job(job_id)
    if job["status"] != "finished":
        raise SystemExit(f"the retried job did not finish: {json.dumps(job)[:2000]}")
    new = job["result"]["version"]
    listed = [v["version"] for v in s.versions(project)]
    files = set(ls_dir(f"/data/models/{project}/reward/{new}"))
    if new not in listed or not {"config.json", "metrics.json", "version.json"} <= files:
        raise SystemExit(f"the retried job's version {new} is not complete and listed: {listed}, {sorted(files)}")
    worker_logs = compose("logs", "--no-color", WORKER, capture=True)
    if f"recovered 1 job(s) abandoned by dead workers: {job_id}" not in worker_logs:
        # The restarted container reuses the old worker's and work-horse's pids: the start-up recovery
        # (worker/recovery.py) must tell them apart by start time, or the job waits for RQ's heartbeat
        # expiry (about 2 minutes).
        retried_by_rq = f"Job {job_id}: scheduled for retry" in worker_logs
        raise SystemExit(
            f"job {job_id} was not recovered at the restarted worker's start"
            + (" (RQ retried it once its heartbeat expired)" if retried_by_rq else "")
        )
    by = "prefloop's recovery at the worker's start"
    summary["retried_job"], summary["retried_version"], summary["retried_by"] = job_id, new, by
    say(f"job {job_id} retried by {by}; it published {new} (complete, listed)")
    Path(args.summary).write_text(json.dumps(summary, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("write-env", "drill"):
        p = sub.add_parser(name)
        p.add_argument("--ls-port", type=int, required=True)
        p.add_argument("--backend-port", type=int, required=True)
        if name == "write-env":
            p.add_argument("--set", nargs="*")
        else:
            p.add_argument("--summary", required=True)
    args = parser.parse_args(argv)
    write_env(args) if args.cmd == "write-env" else drill(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
