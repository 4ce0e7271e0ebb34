"""Predictions pushed by the worker: how long from importing tasks into Label Studio until every task
holds the serving reward model's prediction, and what /predict costs afterwards.

A real deployment on this machine: Label Studio (PREFLOOP_TEST_LS_PORT reuses a running one, else
one is started), a private Redis, `prefloop serve` and `prefloop worker`. The project is connected
like a user connects it, a GPT-2-small-sized reward model (GPT2Config() defaults, random weights,
built locally) is published as its version, and N tasks with both answers (prompt ~15 tokens,
answers ~50 tokens each, as generation writes them) are imported in one request. Label Studio's
TASKS_CREATED webhook queues generation, which finds the answers present and queues a PREDICT job;
the worker scores every task and bulk-imports the predictions. Measured:
- import -> every task has a prediction of /setup's model_version (polled through Label Studio's API);
- the PREDICT job's own time and its split (scoring vs. writing);
- /predict over all N tasks afterwards, as Label Studio sends them: answered from the stored picks.

    .venv/bin/python bench/bench_predictions.py [--tasks 500] [--threads 2]

Writes bench/results/bench_predictions.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "bench_predictions.json"


def publish_gpt2_small(store, project_id: int, tmp: Path) -> tuple[str, int]:
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    from cli.tinymodel import build_tiny_gpt2

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_gpt2(tmp / "tokenizer-source", n_positions=1024))
    with store.staging(project_id, "reward") as staged:
        model = GPT2ForSequenceClassification(GPT2Config(num_labels=1, pad_token_id=tokenizer.pad_token_id))
        model.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        params = sum(p.numel() for p in model.parameters())
        return store.publish(project_id, "reward", staged), params


def text_of(tokenizer, rng: random.Random, n_tokens: int) -> str:
    from tests.support.reward_synthetic import FILLER

    words: list[str] = []
    while len(tokenizer(" ".join(words))["input_ids"]) < n_tokens:
        words.append(rng.choice(FILLER))
    return " ".join(words)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the worker (OMP_NUM_THREADS)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every prediction")
    args = parser.parse_args()

    import requests
    from transformers import AutoTokenizer

    from prefloop.label_config import load_label_config
    from tests.support.labelstudio_server import LabelStudioServer
    from tests.support.services import wait_until
    from tests.support.stack import Stack

    tmp = Path(tempfile.mkdtemp(prefix="bench-predictions-"))
    port = os.environ.get("PREFLOOP_TEST_LS_PORT")
    ls = (
        LabelStudioServer(data_dir=tmp / "ls", port=int(port))
        if port
        else LabelStudioServer(data_dir=tmp / "ls").start()
    )
    stack = Stack(tmp / "stack", ls, ROOT, extra={"omp_num_threads": args.threads}).start()
    project = None
    try:
        project = ls.create_project(load_label_config("pairwise"), title=f"bench predictions {int(time.time())}")
        ls.connect_backend(project, stack.url)
        version, params = publish_gpt2_small(stack.store, project, tmp)
        model_version = stack.model_version(project)
        tokenizer = AutoTokenizer.from_pretrained(stack.store.version_dir(project, "reward", version))
        rng = random.Random(0)
        tasks = [
            {
                "data": {
                    "prompt": f"Task {i}: " + text_of(tokenizer, rng, 15),
                    "answer1": text_of(tokenizer, rng, 50),
                    "answer2": text_of(tokenizer, rng, 50),
                }
            }
            for i in range(args.tasks)
        ]

        load_start = round(os.getloadavg()[0], 1)  # other work on a shared machine slows every number
        started = time.perf_counter()
        ls.import_tasks(project, tasks)
        imported_s = time.perf_counter() - started
        print(
            f"imported {args.tasks} tasks in {imported_s:.1f}s; waiting for the worker's predictions ({model_version})",
            flush=True,
        )

        def all_predicted():
            counts = ls.api("GET", f"/api/projects/{project}/model-versions/")
            return counts if counts.get(model_version, 0) >= args.tasks else None

        counts = wait_until(all_predicted, args.timeout, "every task with a prediction", interval=1.0)
        predicted_s = time.perf_counter() - started
        job = wait_until(
            lambda: next(
                (j for j in stack.jobs(project) if j["kind"] == "predict" and j["status"] == "finished"), None
            ),
            120,
            "the PREDICT job's end",
        )
        stored = ls.tasks(project)
        assert all(any(p["model_version"] == model_version for p in t["predictions"]) for t in stored)
        assert ls.api("GET", f"/api/projects/{project}")["model_version"] == model_version

        body = {
            "project": f"{project}.1700000000",
            "label_config": load_label_config("pairwise"),
            "params": {},
            "tasks": [{"id": t["id"], "data": t["data"]} for t in stored],
        }
        t0 = time.perf_counter()
        r = requests.post(f"{stack.url}/predict", json=body, timeout=120)
        predict_s = time.perf_counter() - t0
        r.raise_for_status()
        answered = sum(isinstance(e, dict) and "result" in e for e in r.json()["results"])
        result = job["result"] or {}
        out = {
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "worker_threads": args.threads,
                "load_average_1m_at_start_and_end": [load_start, round(os.getloadavg()[0], 1)],
            },
            "model": "GPT2Config() defaults (12 layers, 768 wide, random weights)",
            "parameters": params,
            "tasks": args.tasks,
            "tokens": {"prompt": 15, "answer": 50},
            "import_s": round(imported_s, 2),
            "import_to_every_task_predicted_s": round(predicted_s, 2),
            "predict_job": {
                k: result.get(k)
                for k in ("seconds", "scoring_s", "scoring_cpu_s", "writing_s", "scored", "reused", "written")
            },
            "model_versions_in_label_studio": counts,
            "predict_after_push": {
                "tasks": len(stored),
                "seconds": round(predict_s, 3),
                "answered_from_store": answered,
            },
        }
        if job.get("started_at") and job.get("enqueued_at"):
            from datetime import datetime

            waited = datetime.fromisoformat(job["started_at"]) - datetime.fromisoformat(job["enqueued_at"])
            out["predict_job_queue_wait_s"] = round(waited.total_seconds(), 2)
        print(
            f"import -> all {args.tasks} tasks have a prediction: {predicted_s:.1f}s "
            f"(PREDICT job {result.get('seconds')}s: scoring {result.get('scoring_s')}s "
            f"({result.get('scoring_cpu_s')} CPU-s), "
            f"writing {result.get('writing_s')}s; "
            f"{result.get('scored')} scored, {result.get('written')} written)"
        )
        print(f"/predict over {len(stored)} tasks afterwards: {predict_s:.3f}s, {answered} answered from stored picks")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=2))
        print(f"wrote {RESULTS}")
        return 0
    finally:
        if project is not None:
            try:
                ls.api("DELETE", f"/api/projects/{project}")
            except Exception as exc:  # the numbers are written; a leftover project is only noise
                print(f"could not delete project {project}: {exc}")
        stack.stop()
        if not port:
            ls.stop()


if __name__ == "__main__":
    raise SystemExit(main())
