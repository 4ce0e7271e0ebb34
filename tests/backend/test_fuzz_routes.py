"""Generated requests against every route of a real `prefloop serve` (gunicorn, a real Redis): bodies
built from backend/openapi.yaml with wrong types, odd identifiers and random JSON mixed in, raw
bytes, deeply nested JSON, random headers, query strings and path segments. Never a 5xx, never a
traceback or a secret in a response; the server's memory and its Redis keys stay bounded.

Bounded for CI: a fixed number of examples per route (EXAMPLES), derandomized, no example
database, no shrinking, and a wall-clock cap per route (ROUTE_BUDGET_S) after which that route's
remaining examples are not sent: at most about 15 x 2.5 s of requests."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import requests
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from prefloop.artifacts import ArtifactStore
from prefloop.label_config import load_label_config
from tests.support.reward_helpers import publish_copy
from tests.support.services import descendants, free_port, prefloop_env, start_server

SPEC = yaml.safe_load((Path(__file__).parents[2] / "backend" / "openapi.yaml").read_text())
OPERATIONS = [(path, method) for path, item in SPEC["paths"].items() for method in item]
EXAMPLES = 25
ROUTE_BUDGET_S = 2.5
MIN_SENT = 5  # requests every route gets, however slow the machine
SECRETS = {"webhook": "fuzz-webhook-secret-7f3a", "api_key": "fuzz-api-key-91be", "ls_pass": "fuzz-ls-pass-2c8d"}
CONFIG = load_label_config("pairwise")

# --- strategies -------------------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=16,
)
odd_ids = st.sampled_from(["7", "7.1764224400", "8.1", "²", "1" * 300, "1" * 5000, "0", "-1", "٧", " 7", "", "7.x"])
project_ids = st.one_of(
    odd_ids,
    odd_ids,
    st.integers(min_value=-(10**12), max_value=10**12),
    st.fixed_dictionaries({"id": odd_ids | st.integers()}),
)
segments = st.text(max_size=40) | st.sampled_from(
    [
        "..",
        ".",
        "%00",
        "rm-" + "9" * 300,
        "rm-20260101T000000000000",
        "curve.png",
        "reward",
        "policy",
        "7",
        "abc.def",
        "\x00",
        "a/b",
        "%2e%2e",
    ]
)
ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
header_names = st.sampled_from(
    [
        "Content-Type",
        "Accept",
        "Authorization",
        "X-Prefloop-Webhook-Secret",
        "X-Forwarded-For",
        "Content-Encoding",
        "Accept-Encoding",
        "Cookie",
        "X-Requested-With",
        "Range",
    ]
)
header_values = ascii_text.map(str.strip) | st.sampled_from(
    [SECRETS["webhook"], "Basic Og==", "Basic !!!", "application/json", "gzip"]
)
headers = st.dictionaries(header_names, header_values, max_size=4)
queries = st.dictionaries(st.sampled_from(["project", "page", "version", "x"]), odd_ids | ascii_text, max_size=3)


def from_schema(schema: dict) -> st.SearchStrategy:
    """Values shaped like the schema most of the time, wrong ones otherwise."""
    if "$ref" in schema:
        return project_ids if schema["$ref"].endswith("ProjectId") else json_values
    kind = schema.get("type")
    if "enum" in schema:
        shaped = st.sampled_from(schema["enum"]) | st.text(max_size=70)
    elif kind == "string":
        shaped = st.text(max_size=60) | st.sampled_from([CONFIG, "<View/>", "<View", "x" * 30_000, "rm-" + "1" * 300])
    elif kind == "integer":
        shaped = st.integers()
    elif kind == "array":
        shaped = st.lists(from_schema(schema.get("items", {})), max_size=4) | st.just([])
    elif kind == "object":
        props, required = schema.get("properties", {}), set(schema.get("required", ()))
        shaped = st.fixed_dictionaries(
            {k: from_schema(v) for k, v in props.items() if k in required},
            optional={k: from_schema(v) for k, v in props.items() if k not in required},
        )
        if not props:
            shaped = json_values
    else:
        shaped = json_values
    return st.one_of(shaped, shaped, shaped, json_values)


def bodies(operation: dict) -> st.SearchStrategy:
    content = (operation.get("requestBody") or {}).get("content", {}).get("application/json")
    raw = st.binary(max_size=200) | st.sampled_from(
        [
            b"",
            b"{",
            b"[" * 50_000 + b"]" * 50_000,
            b'{"project": 1e999}',
            b'{"project": ' + b"9" * 5000 + b"}",
            "\udcff".encode("utf-8", "surrogatepass"),
        ]
    )
    if content is None:
        return st.none() | raw.map(lambda b: b or None)
    return from_schema(content["schema"]).map(lambda v: json.dumps(v).encode()) | raw


def url_for(path: str, values: list[str]) -> str:
    parts = iter(values)
    return re.sub(r"\{[^}]+\}", lambda _: quote(next(parts), safe="") if values else "x", path)


# --- the server -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(redis_server, tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    redis_url = f"redis://127.0.0.1:{redis_server.port}/7"
    redis.Redis.from_url(redis_url).flushdb()
    publish_copy(ArtifactStore(tmp / "models"), 7, tiny_model_dir)  # /reward scores with a real model
    port = free_port()
    env = prefloop_env(
        redis_url=redis_url,
        model_dir=tmp / "models",
        webhook_secret=SECRETS["webhook"],
        device="cpu",
        label_studio_api_key=SECRETS["api_key"],
        label_studio_url=f"http://prefloop:{SECRETS['ls_pass']}@127.0.0.1:9",
        job_min_interval=10,
        workers=1,
        threads=4,
        predict_time_budget=2,
        omp_num_threads=1,
    )
    proc = start_server(env, port, tmp / "serve.log")
    url = f"http://127.0.0.1:{port}"
    assert requests.post(url + "/setup", json={"project": "7.1", "schema": CONFIG}, timeout=10).status_code == 200
    yield {"url": url, "proc": proc, "redis": redis.Redis.from_url(redis_url), "log": tmp / "serve.log", "sent": {}}
    proc.stop()


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            total += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{p}/status").read_text())[1])
        except (OSError, TypeError):
            pass
    return total / 1024


def test_openapi_lists_every_route_of_the_app(settings):
    """backend/openapi.yaml describes exactly the routes the app serves (add a route: describe it)."""
    from backend.app import create_app

    app = create_app(settings)
    served = {
        (re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served == set(OPERATIONS)


@pytest.mark.parametrize("path, method", OPERATIONS)
def test_generated_requests_never_get_a_5xx_a_traceback_or_a_secret(server, path, method):
    operation = SPEC["paths"][path][method]
    n_params = path.count("{")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )  # no shrinking: a failure is reported as generated
    @given(
        body=bodies(operation),
        hdrs=headers,
        query=queries,
        params=st.lists(segments, min_size=n_params, max_size=n_params),
    )
    def check(body, hdrs, query, params):
        sent = server["sent"].get((path, method), 0)
        if sent >= MIN_SENT and time.monotonic() - started > ROUTE_BUDGET_S:
            return  # bounded in time, but never below MIN_SENT requests on a slow machine
        server["sent"][(path, method)] = sent + 1
        url = server["url"] + url_for(path, params)
        r = requests.request(method.upper(), url, data=body, headers=hdrs, params=query, timeout=30)
        text = r.text
        assert r.status_code < 500, (method, url, body and body[:200], hdrs, r.status_code, text[:500])
        assert "Traceback" not in text and 'File "' not in text, text[:500]
        for secret in SECRETS.values():
            assert secret not in text, (url, secret)

    started = time.monotonic()
    check()
    assert server["sent"].get((path, method), 0) >= MIN_SENT, "too few requests reached the route to mean anything"


def test_the_server_stayed_bounded(server):
    """After all of that: the server is alive, holds a bounded amount of memory, and Redis holds a
    bounded number of keys (a few per served project, however many requests came in)."""
    assert sum(server["sent"].values()) > 150, server["sent"]
    assert server["proc"].alive() and requests.get(server["url"] + "/health", timeout=5).ok
    rss = rss_mb(server["proc"].proc.pid)
    assert rss < 2048, f"prefloop serve holds {rss:.0f} MB"
    conn = server["redis"]
    served = conn.scard("prefloop:projects")
    assert conn.dbsize() <= 30 + 12 * served, (conn.dbsize(), served, sorted(conn.keys())[:50])
    assert "Traceback" not in server["log"].read_text(errors="replace")
