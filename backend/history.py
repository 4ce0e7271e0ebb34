"""The status page's "is it getting better?": per-version history of a project, and job outcomes in words.

- `reward_rows`: every reward version with eval accuracy, its Wilson 95% interval (metrics.json
  `eval/accuracy_ci_low/high`, or computed from `eval/pairs` for versions written before those
  keys), the pairs it used, and how it compares with the version before it: "better" or "worse"
  only when the two intervals do not overlap, else "overlap" (within noise).
- `policy_rows`: every policy version's final reward-model score and KL to the reference.
- `history_svg`: both as one readable SVG (matplotlib, rendered once per set of versions).
- `outcome`: a finished, skipped or failed job's result as a sentence, not JSON.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prefloop.stats import accuracy_interval, compare

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# What `_render` is cached on: (version, pairs used, sorted accuracy items) per reward version, and
# (version, reward, KL) per policy version.
RewardKey = tuple[tuple[Any, Any, tuple[tuple[str, Any], ...]], ...]
PolicyKey = tuple[tuple[Any, Any, Any], ...]


def accuracy_of(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """{"accuracy", "low", "high", "pairs"} of a reward version's metrics, or None without an accuracy."""
    acc = metrics.get("eval/accuracy")
    if not isinstance(acc, (int, float)):
        return None
    n = metrics.get("eval/pairs")
    low, high = metrics.get("eval/accuracy_ci_low"), metrics.get("eval/accuracy_ci_high")
    if (low is None or high is None) and isinstance(n, int) and n > 0:
        low, high = accuracy_interval(float(acc), n)
    if low is None or high is None:
        low, high = 0.0, 1.0  # no count of pairs: nothing can be said about its precision
    return {"accuracy": float(acc), "low": float(low), "high": float(high), "pairs": n}


def reward_rows(versions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Oldest first; each row compares with the previous version that has an accuracy."""
    rows: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    for v in versions:
        metrics = v.get("metrics") or {}
        acc = accuracy_of(metrics)
        row = {
            "version": v["version"],
            "current": v.get("current", False),
            "pairs_used": metrics.get("pairs_used"),
            "accuracy": acc,
            "vs_previous": None,
            "previous": None,
        }
        if acc is not None and previous is not None:
            before = previous["accuracy"]
            row["vs_previous"] = compare((acc["low"], acc["high"]), (before["low"], before["high"]))
            row["previous"] = previous["version"]
        if acc is not None:
            previous = row
        rows.append(row)
    return rows


def verdict(row: Mapping[str, Any]) -> str:
    """What a person may conclude from a reward version's accuracy against the one before it."""
    acc = row.get("accuracy")
    if acc is None:
        return "no eval accuracy recorded"
    text = f"{acc['accuracy']:.2f} [95% CI {acc['low']:.2f}-{acc['high']:.2f}] on {acc['pairs']} eval pairs"
    if row.get("vs_previous") == "overlap":
        text += f"; overlaps {row['previous']}'s interval: not measurably better or worse (more eval pairs would tell)"
    elif row.get("vs_previous") in ("better", "worse"):
        text += f"; {row['vs_previous']} than {row['previous']} (intervals do not overlap)"
    return text


def policy_rows(versions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for v in versions:
        m = v.get("metrics") or {}
        rows.append(
            {
                "version": v["version"],
                "current": v.get("current", False),
                "trainer": m.get("trainer"),
                "reward": m.get("final_reward"),
                "initial_reward": m.get("initial_reward"),
                "kl": m.get("final_kl"),
            }
        )
    return rows


def history_svg(reward: Sequence[Mapping[str, Any]], policy: Sequence[Mapping[str, Any]]) -> bytes:
    key = (
        tuple((r["version"], r["pairs_used"], tuple(sorted((r["accuracy"] or {}).items()))) for r in reward),
        tuple((p["version"], p["reward"], p["kl"]) for p in policy),
    )
    return _render(key)


@functools.lru_cache(maxsize=64)
def _render(key: tuple[RewardKey, PolicyKey]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reward, policy = key
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    try:
        points = [(pairs, dict(acc), version) for version, pairs, acc in reward if acc and pairs is not None]
        if points:
            xs = [p[0] for p in points]
            ys = [p[1]["accuracy"] for p in points]
            lows = [p[1]["accuracy"] - p[1]["low"] for p in points]
            highs = [p[1]["high"] - p[1]["accuracy"] for p in points]
            left.errorbar(
                xs, ys, yerr=[lows, highs], marker="o", capsize=4, color="tab:green", label="eval accuracy, 95% CI"
            )
            for x, y, (_, acc, _) in zip(xs, ys, points):
                left.annotate(f"n={acc['pairs']}", (x, y), textcoords="offset points", xytext=(5, -12), fontsize=7)
        else:
            left.text(
                0.5,
                0.5,
                "no reward model with an eval accuracy yet",
                ha="center",
                va="center",
                transform=left.transAxes,
            )
        left.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
        left.set_ylim(0, 1)
        left.set_xlabel("preference pairs used")
        left.set_ylabel("held-out pairwise accuracy")
        left.set_title("reward model per version", fontsize=10)
        left.legend(fontsize=8, loc="lower right")
        left.grid(alpha=0.3)
        _policy_panel(right, policy)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg")
        return buffer.getvalue()
    finally:
        plt.close(fig)


def _policy_panel(ax: Axes, policy: PolicyKey) -> None:
    numbered = [(i + 1, r, kl) for i, (_, r, kl) in enumerate(policy)]
    scored = [(i, r) for i, r, _ in numbered if isinstance(r, (int, float))]
    if not scored:
        ax.text(0.5, 0.5, "no policy version yet", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.plot(*zip(*scored), marker="o", color="tab:blue", label="final reward-model score")
    ax.set_xlabel("policy version (1 = first)")
    ax.set_ylabel("reward-model score", color="tab:blue")
    ax.set_title("policy per version", fontsize=10)
    ax.grid(alpha=0.3)
    kls = [(i, kl) for i, _, kl in numbered if isinstance(kl, (int, float))]
    twin = ax.twinx()
    if kls:
        twin.plot(*zip(*kls), marker="s", color="tab:red", linestyle="--", label="KL to reference (nats)")
        twin.set_ylim(bottom=0)
    twin.set_ylabel("KL to reference (nats)", color="tab:red")
    if scored or kls:
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=8, loc="upper left")
    if numbered:
        ax.set_xticks([i for i, _, _ in numbered])


COUNTS = ("filled", "failed", "skipped", "remaining", "written", "scored", "reused", "pairs", "changes")


def outcome(job: Mapping[str, Any]) -> str:
    """A finished job's result (published, skipped, ...) as a sentence."""
    result = job.get("result")
    if not isinstance(result, Mapping):
        return "" if result is None else str(result)
    status = result.get("status")
    if status == "skipped":
        return f"skipped: {result.get('reason') or 'no reason given'}"
    parts = [str(status or "finished")]
    if result.get("version"):
        parts[0] += f" {result['version']}"
    raw_metrics = result.get("metrics")
    metrics: Mapping[str, Any] = raw_metrics if isinstance(raw_metrics, Mapping) else {}
    acc = accuracy_of(metrics) if metrics else None
    if acc is not None:
        parts.append(
            f"eval accuracy {acc['accuracy']:.2f} [95% CI {acc['low']:.2f}-{acc['high']:.2f}] on {acc['pairs']} pairs"
        )
    elif metrics.get("final_reward") is not None:
        parts.append(f"final reward {metrics['final_reward']:.3g}, KL {metrics.get('final_kl') or 0:.3g}")
    for key in ("ppo", "policy"):
        follow = result.get(key)
        if isinstance(follow, Mapping):
            parts.append(f"{key}: queued" if follow.get("queued") else f"{key} not queued: {follow.get('reason')}")
    counts = [
        f"{key} {result[key]}"
        for key in COUNTS
        if isinstance(result.get(key), int) and not isinstance(result[key], bool)
    ]
    if counts:
        parts.append(", ".join(counts))
    pushed = result.get("predictions")
    if isinstance(pushed, Mapping):
        parts.append(
            f"predictions {pushed.get('status', '')}: {pushed.get('written', pushed.get('error', ''))} written"
            if "error" not in pushed
            else f"predictions not written: {pushed['error']}"
        )
    if result.get("reason") and status != "published":
        parts.append(f"reason: {result['reason']}")
    return "; ".join(parts)
