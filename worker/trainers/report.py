"""What a person reads about a policy run, the same files for every trainer, in the version directory:

<trainer>_config.json  every knob of the run plus where it started (ppo_config.json, dpo_config.json, ...)
metrics.json           the summary and the per-step history. Keys every trainer writes, so runs compare:
                       trainer, steps_done, stopped_early, final_kl (measured on the published policy,
                       nats per response), kl_stop, samples_score_before/after (reward-model scores of
                       the samples, when a reward model exists), runtime_s. Trainer-specific numbers are
                       namespaced: dpo/..., grpo/..., rloo/... (PPO's history uses objective/..., policy/...).
samples.json           responses to the same prompts before and after, with their reward-model scores,
                       so reward hacking (repetition, degenerate text) is visible
curve.png              the trainer's curves per step (KL to the start, loss, reward, ...)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefloop.artifacts import write_json


def mean(xs: Sequence[float | None] | None) -> float | None:
    values = [float(x) for x in xs or () if x is not None and math.isfinite(float(x))]
    return sum(values) / len(values) if values else None


def summary(
    trainer: str,
    *,
    history: Sequence[dict[str, Any]],
    final_kl: float | None,
    kl_stop: float | None,
    stopped_early: str | None,
    before_scores: Sequence[float | None] | None,
    after_scores: Sequence[float | None] | None,
    runtime_s: float,
    steps_done: int,
    **extra: Any,
) -> dict[str, Any]:
    """metrics.json of a TRL-trained policy: the shared keys, then `extra` namespaced as <trainer>/<key>."""
    before, after = mean(before_scores), mean(after_scores)
    return {
        "trainer": trainer,
        "steps_done": steps_done,
        "stopped_early": stopped_early,
        "final_kl": final_kl,
        "kl_stop": kl_stop,
        "samples_score_before": before,
        "samples_score_after": after,
        "samples_score_gain": None if before is None or after is None else after - before,
        "runtime_s": runtime_s,
        **{k if "/" in k else f"{trainer}/{k}": v for k, v in extra.items()},
        "history": list(history),
    }


def namespaced_history(
    trainer: str, log_history: Sequence[dict[str, Any]], checks: Sequence[dict[str, float]]
) -> list[dict[str, Any]]:
    """TRL's per-step training logs (keys prefixed <trainer>/) merged with the KL checks, by step."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        if "step" not in entry or any(k.startswith(("train_", "eval_")) for k in entry):
            continue
        row = rows.setdefault(int(entry["step"]), {"step": int(entry["step"])})
        row.update({f"{trainer}/{k}": v for k, v in entry.items() if k != "step" and isinstance(v, (int, float))})
    for check in checks:
        rows.setdefault(int(check["step"]), {"step": int(check["step"])})["objective/kl"] = check["objective/kl"]
    return [rows[s] for s in sorted(rows)]


def sample_records(
    prompts: Sequence[str],
    before: Sequence[str],
    after: Sequence[str],
    before_scores: Sequence[float | None],
    after_scores: Sequence[float | None],
) -> list[dict[str, Any]]:
    return [
        {"prompt": p, "before": b, "after": a, "score_before": sb, "score_after": sa}
        for p, b, a, sb, sa in zip(prompts, before, after, before_scores, after_scores)
    ]


def write_report(
    out_dir: Path,
    trainer: str,
    *,
    config: dict[str, Any],
    metrics: dict[str, Any],
    samples: list[dict[str, Any]],
    curves: Sequence[tuple[str, str]],
) -> None:
    out_dir = Path(out_dir)
    write_json(out_dir / f"{trainer}_config.json", config)
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "samples.json", samples)
    plot_curves(metrics.get("history") or [], curves, out_dir / "curve.png", f"{trainer.upper()} run")


def plot_curves(history: Sequence[dict[str, Any]], curves: Sequence[tuple[str, str]], path: Path, title: str) -> None:
    """One panel per (metric key, title); a key a step lacks is a gap in its line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4 if len(curves) > 3 else max(1, len(curves))
    rows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.25 * rows), squeeze=False)
    for ax in axes.flat[len(curves) :]:
        ax.axis("off")
    for ax, (key, name) in zip(axes.flat, curves):
        points = [(h.get("step", i), h[key]) for i, h in enumerate(history) if isinstance(h.get(key), (int, float))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="." if len(points) < 40 else None)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
