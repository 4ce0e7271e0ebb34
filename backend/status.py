"""/status: a page for people, not machines. Server-rendered HTML that shows, per project, the
serving reward-model and policy versions with their metrics and plots, the version history (eval
accuracy with its 95% interval against the pairs used, policy reward and KL per version, as a table
and a plot: backend/history.py), per-annotator agreement, queued and running jobs with progress,
finished jobs' outcomes in words, and the last errors. A reward version whose accuracy interval
overlaps the previous version's is said to be within noise of it, never "better". It refreshes itself every 10 s so a person
labelling in Label Studio can watch the versions change.

Plots are served from the version directories through `/status/plot/...`, which accepts only a
published version of a known kind and a plain `*.png` file name inside it (no path traversal).
Basic auth applies when BASIC_AUTH_* is set (the app's `before_request` guards every route here).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import redis
from flask import Blueprint, Flask, Response, abort, render_template_string, request, send_file

from backend import history as hist
from backend.context import Context, context
from prefloop.artifacts import KINDS
from prefloop.errors import BadRequest, ModelNotFound
from prefloop.labelstudio import parse_project_id
from prefloop.redact import redact_url

logger = logging.getLogger(__name__)
bp = Blueprint("status", __name__)

PLOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}\.png$")
HISTORY = 10  # versions listed per kind
JOBS_SHOWN = 20  # jobs listed
ERRORS_SHOWN = 5  # failed jobs listed with their messages
REFRESH_S = 10


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/status")
def status_page() -> str:
    ctx = context()
    project = request.args.get("project")
    project_id = parse_project_id(project) if project else None
    jobs, queue_error = _jobs(ctx, project_id)
    projects = [project_id] if project_id is not None else _known_projects(ctx, jobs)
    page = {
        "refresh_s": REFRESH_S,
        "selected": project_id,
        "queue_error": queue_error,
        "workers": _workers(ctx) if queue_error is None else None,
        "settings": _shown_settings(ctx),
        "model_note": _model_note(ctx.settings.base_model),
        "projects": [_project_view(ctx, p, history=HISTORY if project_id is not None else 3) for p in projects],
        "active": [j for j in jobs if j["status"] in ("queued", "scheduled", "deferred", "started")][:JOBS_SHOWN],
        "recent": [j for j in jobs if j["status"] in ("finished", "canceled", "stopped")][:JOBS_SHOWN],
        "errors": [j for j in jobs if j["status"] == "failed"][:ERRORS_SHOWN],
    }
    return render_template_string(TEMPLATE, **page)


@bp.get("/status/history/<int:project_id>.svg")
def history_plot(project_id: int) -> tuple[bytes, int, dict[str, str]]:
    """Eval accuracy (95% CI) against pairs used, and policy reward and KL, per version (SVG)."""
    store = context().store
    svg = hist.history_svg(
        hist.reward_rows(store.versions(project_id, "reward")), hist.policy_rows(store.versions(project_id, "policy"))
    )
    return svg, 200, {"Content-Type": "image/svg+xml", "Cache-Control": "no-cache"}


@bp.get("/status/plot/<int:project_id>/<kind>/<version>/<name>")
def plot(project_id: int, kind: str, version: str, name: str) -> Response:
    """A PNG from a published version directory; anything else is a 404."""
    if kind not in KINDS or not PLOT_NAME.match(name):
        abort(404)
    try:
        vdir = context().store.version_dir(project_id, kind, version).resolve()
    except ModelNotFound:
        abort(404)
    path = (vdir / name).resolve()
    if path.parent != vdir or not path.is_file():
        abort(404)
    return send_file(path, mimetype="image/png", max_age=3600)


# --- what the page shows ----------------------------------------------------------------------------
def _jobs(ctx: Context, project_id: int | None) -> tuple[list[dict[str, Any]], str | None]:
    try:
        return ctx.queue.jobs(project_id, limit=200), None
    except redis.RedisError as exc:
        return (
            [],
            f"Redis at {ctx.queue.shown_url} is unreachable ({type(exc).__name__}): no job can be queued or shown",
        )


def _known_projects(ctx: Context, jobs: list[dict[str, Any]]) -> list[int]:
    ids = set(ctx.store.projects())
    ids.update(int(j["project_id"]) for j in jobs if j.get("project_id"))
    try:
        ids.update(ctx.queue.served_projects())
    except redis.RedisError:
        pass  # already reported as queue_error
    return sorted(i for i in ids if i > 0)


def _workers(ctx: Context) -> list[dict[str, Any]]:
    from rq import Worker

    names = set(ctx.queue.queue_names())
    try:
        workers = Worker.all(connection=ctx.queue.connection)
    except redis.RedisError:
        return []
    out = []
    for w in workers:
        if names & set(w.queue_names()):
            current = w.get_current_job_id()
            out.append({"name": w.name, "state": str(getattr(w.get_state(), "value", w.get_state())), "job": current})
    return out


def _model_note(base_model: str) -> str | None:
    """What the builder of a local model left for people (`prefloop up`'s tiny offline model says
    why its answers are gibberish) in `prefloop-note.txt` next to it."""
    note = Path(base_model) / "prefloop-note.txt"
    try:
        return note.read_text(encoding="utf-8").strip()[:500] or None
    except OSError:
        return None


def _shown_settings(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    return {
        "BASE_MODEL": s.base_model,
        "DEVICE": s.device,
        "MIN_NEW_ANNOTATIONS": s.min_new_annotations,
        "PPO_MIN_ACCURACY": s.ppo_min_accuracy,
        "POLICY_TRAINER": s.policy_trainer,
        "JOB_MIN_INTERVAL": s.job_min_interval,
        "LABEL_STUDIO_URL": redact_url(s.label_studio_url),
        "KEEP_VERSIONS": s.keep_versions,
    }


def _project_view(ctx: Context, project_id: int, history: int) -> dict[str, Any]:
    current = ctx.store.current(project_id)
    view: dict[str, Any] = {
        "id": project_id,
        "model_version": ctx.store.model_version(project_id),
        "kinds": [],
        "has_history": False,
        "annotators": [],
    }
    for kind in KINDS:
        versions = ctx.store.versions(project_id, kind)
        serving = next((v for v in versions if v["current"]), None)
        rows = hist.reward_rows(versions) if kind == "reward" else hist.policy_rows(versions)
        serving_row = next((r for r in rows if r["current"]), None)
        view["has_history"] = view["has_history"] or bool(versions)
        if kind == "reward" and serving:
            view["annotators"] = annotator_rows((serving["metrics"] or {}).get("annotators"))
        view["kinds"].append(
            {
                "kind": kind,
                "title": "Reward model" if kind == "reward" else "Policy",
                "current": current.get(kind),
                "verdict": hist.verdict(serving_row) if kind == "reward" and serving_row else None,
                "metrics": flat_metrics({k: v for k, v in (serving["metrics"] or {}).items() if k != "annotators"})
                if serving
                else [],  # annotators: their own table below
                "plots": _plots(serving["path"]) if serving else [],
                "history": [
                    dict(r, summary=_summary(v["metrics"]), verdict=hist.verdict(r) if kind == "reward" else None)
                    for v, r in list(zip(versions, rows))[::-1][:history]
                ],
                "count": len(versions),
                "keep": ctx.settings.keep_versions,
                "pinned": [v["version"] for v in versions if v.get("pinned")],
            }
        )
    return view


def annotator_rows(stats: Any) -> list[dict[str, Any]]:
    """The reward version's per-annotator table (metrics.json "annotators"), most votes first."""
    if not isinstance(stats, dict):
        return []
    rows = [dict(v, annotator=k) for k, v in stats.items() if isinstance(v, dict)]
    return sorted(rows, key=lambda r: -(r.get("votes") or 0))


def _plots(path: str) -> list[str]:
    return sorted(p.name for p in Path(path).glob("*.png") if PLOT_NAME.match(p.name))


def flat_metrics(metrics: Any, prefix: str = "", limit: int = 40) -> list[tuple[str, str]]:
    """Scalar metrics as (name, formatted value) rows; nested dicts become "a/b" names."""
    rows: list[tuple[str, str]] = []
    if not isinstance(metrics, dict):
        return rows
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flat_metrics(value, prefix=f"{name}/", limit=limit)
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            rows.append((name, str(value)))
        elif isinstance(value, (int, float)):
            rows.append((name, f"{value:.4g}" if isinstance(value, float) else str(value)))
        elif isinstance(value, list) and len(value) <= 8 and all(isinstance(v, (int, float, str)) for v in value):
            rows.append((name, ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)))
    return rows[:limit]


def _summary(metrics: Any) -> str:
    """The few metrics worth a glance in the history table."""
    rows = dict(flat_metrics(metrics, limit=200))
    keys = [k for k in rows if re.search(r"(accuracy|loss|reward|kl)$", k)]
    return ", ".join(f"{k}={rows[k]}" for k in keys[:4])


def _progress(job: dict[str, Any]) -> str:
    p = job.get("progress") or {}
    if not isinstance(p, dict):
        return str(p)
    done, total = p.get("done"), p.get("total")
    text = f"{done}/{total}" if total else (str(done) if done is not None else "")
    extra = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items() if k not in ("done", "total")
    )
    return " ".join(part for part in (job.get("stage") or "", text, f"({extra})" if extra else "") if part)


@bp.app_template_filter("progress")
def _progress_filter(job: dict[str, Any]) -> str:
    return _progress(job)


@bp.errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> tuple[str, int]:
    return render_template_string("<p>{{ message }}</p>", message=str(exc)), 400


@bp.app_template_filter("outcome")
def _outcome_filter(job: dict[str, Any]) -> str:
    return hist.outcome(job)


@bp.app_template_filter("share")
def _share_filter(value: Any) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _ci(value: Any) -> str:
    if not isinstance(value, dict) or value.get("rate") is None:
        return "n/a"
    return f"{value['rate']:.2f} [{value['low']:.2f}-{value['high']:.2f}] of {value['n']}"


@bp.app_template_filter("ci")
def _ci_filter(value: Any) -> str:
    return _ci(value)


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{{ refresh_s }}">
<title>prefloop status</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1320px; }
 table { border-collapse: collapse; margin: .5em 0 1em; } td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; font-size: 90%; }
 th { background: #f3f3f3; } .current { font-weight: bold; } .error { color: #a00; } .muted { color: #777; }
 .kind { margin: 0 0 1.5em; } img { max-width: 100%; height: auto; border: 1px solid #ddd; }
 .verdict { font-size: 95%; } .noise { color: #8a5a00; }
 code { background: #f6f6f6; padding: 0 .2em; }
</style></head><body>
<h1>prefloop status</h1>
{% if model_note %}<p class="noise" id="model-note"><b>Model:</b> {{ model_note }}</p>{% endif %}
<p class="muted">Refreshes every {{ refresh_s }} s.
{% if selected %}<a href="?">All projects</a>{% endif %}</p>
{% if queue_error %}<p class="error" id="queue-error">{{ queue_error }}</p>
{% elif workers is not none %}<p id="workers">Workers: {% if not workers %}<span class="error">none running: start <code>prefloop worker</code></span>
{% else %}{% for w in workers %}<code>{{ w.name }}</code> {{ w.state }}{% if w.job %} ({{ w.job }}){% endif %}{% if not loop.last %}; {% endif %}{% endfor %}{% endif %}</p>{% endif %}

{% if not projects %}<p>No project yet: connect this backend to a Label Studio project (Settings &gt; Model).</p>{% endif %}
{% for p in projects %}
<section class="project" id="project-{{ p.id }}">
<h2>Project {{ p.id }} <small class="muted">serving <code class="model-version">{{ p.model_version }}</code></small>
{% if not selected %}<small><a href="?project={{ p.id }}">details</a></small>{% endif %}</h2>
{% if p.has_history %}<h3>Is it getting better?</h3>
<p><img class="history-plot" alt="eval accuracy with 95% interval against pairs used; policy reward and KL per version"
 src="{{ url_for('status.history_plot', project_id=p.id) }}"></p>{% endif %}
{% for k in p.kinds %}<div class="kind" id="{{ k.kind }}-{{ p.id }}">
<h3>{{ k.title }}: {% if k.current %}<code class="version">{{ k.current }}</code>{% else %}<span class="muted">{{ 'none yet' if k.kind == 'reward' else 'base model' }}</span>{% endif %}
 <small class="muted">({{ k.count }} version{{ '' if k.count == 1 else 's' }}; {% if k.keep %}the newest {{ k.keep }} are kept (KEEP_VERSIONS), older ones deleted, never the current{% if k.pinned %} or the pinned {{ k.pinned|join(', ') }}{% else %} or a pinned one{% endif %}{% else %}all kept (KEEP_VERSIONS=0){% endif %})</small></h3>
{% if k.verdict %}<p class="verdict{{ ' noise' if 'overlaps' in k.verdict else '' }}">Eval accuracy {{ k.verdict }}</p>{% endif %}
{% if k.metrics %}<table class="metrics"><tr><th>metric</th><th>value</th></tr>
{% for name, value in k.metrics %}<tr><td>{{ name }}</td><td>{{ value }}</td></tr>{% endfor %}</table>{% endif %}
{% for plot in k.plots %}{% set src = url_for('status.plot', project_id=p.id, kind=k.kind, version=k.current, name=plot) %}<p><a href="{{ src }}"><img alt="{{ plot }}" src="{{ src }}"></a></p>{% endfor %}
{% if k.history and k.kind == 'reward' %}<table class="history"><tr><th>version</th><th>pairs used</th><th>eval accuracy [95% CI], eval pairs, against the previous version</th></tr>
{% for v in k.history %}<tr class="{{ 'current' if v.current else '' }}"><td>{{ v.version }}</td><td>{{ v.pairs_used if v.pairs_used is not none else '' }}</td><td class="{{ 'noise' if v.vs_previous == 'overlap' else '' }}">{{ v.verdict }}</td></tr>{% endfor %}</table>
{% elif k.history %}<table class="history"><tr><th>version</th><th>trainer</th><th>final reward</th><th>KL to reference</th><th>metrics</th></tr>
{% for v in k.history %}<tr class="{{ 'current' if v.current else '' }}"><td>{{ v.version }}</td><td>{{ v.trainer or '' }}</td><td>{{ v.reward|share }}</td><td>{{ v.kl|share }}</td><td>{{ v.summary }}</td></tr>{% endfor %}</table>{% endif %}
</div>{% endfor %}
{% if p.annotators %}<h3>Annotators</h3><table class="annotators" id="annotators-{{ p.id }}"><tr><th>annotator</th><th>votes</th>
<th>agrees with the other annotators' majority [95% CI] of comparisons</th><th>agrees with reward model {{ p.kinds[0].current }} [95% CI] of votes</th></tr>
{% for a in p.annotators %}<tr><td>{{ a.annotator }}</td><td>{{ a.votes }}</td><td>{{ a.majority|ci }}</td><td>{{ a.model|ci }}</td></tr>{% endfor %}</table>
<p class="muted">Majority: of the comparisons an annotator shares with others (leave-one-out, ties among the others left out).
Reward model: over all their votes, including pairs it was trained on.</p>{% endif %}
</section>
{% endfor %}

<h2>Jobs</h2>
{% if active %}<table id="active-jobs"><tr><th>job</th><th>kind</th><th>project</th><th>status</th><th>progress</th><th>reason</th><th>queued</th><th>last attempt</th></tr>
{% for j in active %}<tr><td>{{ j.id }}</td><td>{{ j.kind }}{% if j.trainer %} ({{ j.trainer }}){% endif %}</td><td>{{ j.project_id }}</td><td>{{ j.status }}</td><td>{{ j|progress }}</td><td>{{ j.reason }}</td><td>{{ j.enqueued_at }}</td>
<td class="error">{% if j.error %}{{ j.error }} (retries left: {{ j.retries_left }}){% endif %}</td></tr>{% endfor %}</table>
{% else %}<p class="muted" id="active-jobs">Nothing queued or running.</p>{% endif %}
{% if recent %}<h3>Recently finished</h3><table id="recent-jobs"><tr><th>job</th><th>kind</th><th>project</th><th>status</th><th>ended</th><th>result</th></tr>
{% for j in recent %}<tr><td>{{ j.id }}</td><td>{{ j.kind }}{% if j.trainer %} ({{ j.trainer }}){% endif %}</td><td>{{ j.project_id }}</td><td>{{ j.status }}</td><td>{{ j.ended_at }}</td><td>{{ j|outcome }}</td></tr>{% endfor %}</table>{% endif %}

<h2>Last errors</h2>
{% if errors %}<table id="errors"><tr><th>job</th><th>kind</th><th>project</th><th>ended</th><th>error</th></tr>
{% for j in errors %}<tr><td>{{ j.id }}</td><td>{{ j.kind }}{% if j.trainer %} ({{ j.trainer }}){% endif %}</td><td>{{ j.project_id }}</td><td>{{ j.ended_at }}</td><td class="error">{{ j.error }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted" id="errors">No failed jobs.</p>{% endif %}

<h2>Settings</h2><table>{% for k, v in settings.items() %}<tr><td>{{ k }}</td><td><code>{{ v }}</code></td></tr>{% endfor %}</table>
</body></html>
"""
