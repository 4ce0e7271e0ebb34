"""Oversized input against a real `prefloop serve` (gunicorn, one worker process): how long the
answer takes and how much memory the server holds afterwards.

    .venv/bin/python bench/bench_oversized.py [--budget 5]

Cases (issue 15 measured 17 s and a 4.3 GB gunicorn worker for one 10 MB text before the caps):
a 10 MB prompt on /reward (refused, 413, MAX_TEXT_CHARS) and on /predict (no prediction for that
task), and the largest /reward the caps allow (1,000 items of MAX_TEXT_CHARS characters), which
PREDICT_TIME_BUDGET (--budget) stops. Uses the tiny offline GPT-2 as the reward model. Writes
bench/results/bench_oversized.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from prefloop.artifacts import ArtifactStore  # noqa: E402
from prefloop.label_config import load_label_config  # noqa: E402
from tests.support.reward_helpers import publish_copy  # noqa: E402
from tests.support.services import RedisServer, descendants, free_port, prefloop_env, start_server  # noqa: E402

CONFIG = load_label_config("pairwise")


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            total += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{p}/status").read_text())[1])
        except (OSError, TypeError):
            pass
    return total / 1024


def timed(method: str, url: str, **kwargs) -> tuple[float, int, str]:
    started = time.perf_counter()
    r = requests.request(method, url, timeout=300, **kwargs)
    return time.perf_counter() - started, r.status_code, r.text[:160]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=5.0, help="PREDICT_TIME_BUDGET of the server, seconds")
    args = ap.parse_args()
    from cli.tinymodel import build_tiny_gpt2

    tmp = Path(tempfile.mkdtemp(prefix="bench-oversized-"))
    redis_server = RedisServer().start()
    model = build_tiny_gpt2(tmp / "tiny")
    publish_copy(ArtifactStore(tmp / "models"), 7, model)
    port = free_port()
    env = prefloop_env(
        redis_url=redis_server.url,
        model_dir=tmp / "models",
        device="cpu",
        workers=1,
        threads=4,
        predict_time_budget=args.budget,
        omp_num_threads=1,
    )
    proc = start_server(env, port, tmp / "serve.log")
    url = f"http://127.0.0.1:{port}"
    out: dict = {"budget_s": args.budget, "cases": {}}
    try:
        requests.post(url + "/setup", json={"project": "7.1", "schema": CONFIG}, timeout=10)
        out["rss_mb_idle"] = round(rss_mb(proc.proc.pid))
        timed("POST", url + "/reward", json={"project": 7, "items": [{"prompt": "warm", "response": "up"}]})
        out["rss_mb_model_loaded"] = round(rss_mb(proc.proc.pid))
        big = "x" * 10_000_000
        cases = {
            "reward_10MB_prompt": {"project": 7, "items": [{"prompt": big, "response": "a"}]},
            "predict_10MB_prompt": None,
            "reward_1000_items_at_MAX_TEXT_CHARS": {
                "project": 7,
                "items": [{"prompt": "word " * 4000, "response": "a"}] * 1000,
            },
        }
        for name, body in cases.items():
            path = "/reward" if name.startswith("reward") else "/predict"
            if body is None:
                body = {
                    "project": "7.1",
                    "label_config": CONFIG,
                    "tasks": [{"id": 1, "data": {"prompt": big, "answer1": "a", "answer2": "b"}}],
                }
            seconds, status, text = timed("POST", url + path, json=body)
            out["cases"][name] = {
                "seconds": round(seconds, 3),
                "status": status,
                "answer": text,
                "rss_mb_after": round(rss_mb(proc.proc.pid)),
            }
            rss = out["cases"][name]["rss_mb_after"]
            print(f"{name:40s} {status}  {seconds:7.2f} s  server RSS {rss} MB  {text[:90]}")
    finally:
        proc.stop()
        redis_server.stop()
    results = Path(__file__).resolve().parent / "results" / "bench_oversized.json"
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(out, indent=2))
    print(f"idle {out['rss_mb_idle']} MB, model loaded {out['rss_mb_model_loaded']} MB; wrote {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
