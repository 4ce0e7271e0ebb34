"""What a person reads about a PPO run, saved in the policy version's directory:

ppo_config.json   every knob of the run (worker.ppo.config.PPOConfig) plus where it started
metrics.json      the summary (final KL and score, why it stopped) and the per-step history
samples.json      responses to the same prompts before and after, with their reward scores,
                  so reward hacking (repetition, degenerate text) is visible
curve.png         KL, reward, clipfrac, entropy, value loss and response length per step
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worker.trainers import report as shared
from worker.trainers.report import sample_records as sample_records  # noqa: F401  (PPO's run.py imports it from here)

CURVES = [
    ("objective/scores", "reward-model score"),
    ("objective/kl", "KL to reference (nats)"),
    ("objective/rlhf_reward", "score - beta * KL"),
    ("policy/clipfrac", "policy clipfrac"),
    ("policy/entropy", "entropy (nats/token)"),
    ("loss/value", "value loss"),
    ("response/length", "response length (tokens)"),
    ("objective/kl_coef", "KL coefficient beta"),
]


def summary(
    history: Sequence[dict[str, float]],
    final: dict[str, float],
    stopped_early: str | None,
    before_scores: Sequence[float],
    after_scores: Sequence[float],
    **extra: Any,
) -> dict[str, Any]:
    """PPO's metrics.json: the keys every policy trainer writes (worker.trainers.report) plus PPO's own."""
    before, after = shared.mean(before_scores), shared.mean(after_scores)
    return {
        "trainer": "ppo",
        "steps_done": len(history),
        "episodes": int(sum(h.get("episodes", 0) for h in history)),
        "stopped_early": stopped_early,
        "final_kl": final.get("objective/kl"),
        "final_reward": final.get("objective/scores"),  # mean reward-model score of the published policy
        "initial_reward": history[0]["objective/scores"] if history else final.get("objective/scores"),
        "samples_score_before": before,
        "samples_score_after": after,
        "samples_score_gain": None if before is None or after is None else after - before,
        **extra,
        "history": list(history),
    }


def write_report(
    out_dir: Path, *, config: dict[str, Any], metrics: dict[str, Any], samples: list[dict[str, Any]]
) -> None:
    shared.write_report(out_dir, "ppo", config=config, metrics=metrics, samples=samples, curves=CURVES)
