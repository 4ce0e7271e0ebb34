"""What a person reads about a PPO run, saved in the policy version's directory:

    ppo_config.json   every knob of the run (worker.ppo.config.PPOConfig) plus where it started
    metrics.json      the summary (final KL and score, why it stopped) and the per-step history
    samples.json      responses to the same prompts before and after, with their reward scores,
                      so reward hacking (repetition, degenerate text) is visible
    curve.png         KL, reward, clipfrac, entropy, value loss and response length per step
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from prefloop.artifacts import write_json

CURVES = [
    ("objective/scores", "reward-model score"), ("objective/kl", "KL to reference (nats)"),
    ("objective/rlhf_reward", "score - beta * KL"), ("policy/clipfrac", "policy clipfrac"),
    ("policy/entropy", "entropy (nats/token)"), ("loss/value", "value loss"),
    ("response/length", "response length (tokens)"), ("objective/kl_coef", "KL coefficient beta"),
]


def summary(history: Sequence[dict[str, float]], final: dict[str, float], stopped_early: str | None,
            before_scores: Sequence[float], after_scores: Sequence[float], **extra: Any) -> dict[str, Any]:
    def mean(xs):
        xs = [x for x in xs if x is not None and math.isfinite(x)]
        return sum(xs) / len(xs) if xs else None

    return {
        "steps_done": len(history),
        "episodes": int(sum(h.get("episodes", 0) for h in history)),
        "stopped_early": stopped_early,
        "final_kl": final.get("objective/kl"),
        "final_reward": final.get("objective/scores"),  # mean reward-model score of the published policy
        "initial_reward": history[0]["objective/scores"] if history else final.get("objective/scores"),
        "samples_score_before": mean(before_scores),
        "samples_score_after": mean(after_scores),
        **extra,
        "history": list(history),
    }


def write_report(out_dir: Path, *, config: dict[str, Any], metrics: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    out_dir = Path(out_dir)
    write_json(out_dir / "ppo_config.json", config)
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "samples.json", samples)
    plot_curves(metrics.get("history") or [], out_dir / "curve.png")


def sample_records(prompts: Sequence[str], before: Sequence[str], after: Sequence[str],
                   before_scores: Sequence[float], after_scores: Sequence[float]) -> list[dict[str, Any]]:
    return [{"prompt": p, "before": b, "after": a, "score_before": sb, "score_after": sa}
            for p, b, a, sb, sa in zip(prompts, before, after, before_scores, after_scores)]


def plot_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 6.5))
    steps = [h.get("step", i) for i, h in enumerate(history)]
    for ax, (key, title) in zip(axes.flat, CURVES):
        ys = [h.get(key, float("nan")) for h in history]
        ax.plot(steps, ys, marker="." if len(steps) < 40 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("PPO step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("PPO run")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
