"""What a reward-model run writes next to its weights: evaluation metrics, data statistics with the
annotation ids used, the resolved config, and a PNG of the training curve.

Metric keys (metrics.json, also the job's result and `prefloop versions` output):
  eval/accuracy                  share of held-out pairs where r(chosen) > r(rejected)
  eval/margin_mean               mean of r(chosen) - r(rejected) on held-out pairs
  eval/reward_mean, eval/reward_std   over all held-out responses
  eval/length_baseline_accuracy  "the longer answer wins" on the same pairs (ties count half):
                                 a model near this number may have learned length, not preference
  annotator_agreement            P(two annotators agree) where a comparison has several (null if none)
  pairs_used, train/pairs, eval/pairs, train/loss_final, train/runtime_s, train/pairs_per_s
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from prefloop.artifacts import write_json
from prefloop.preferences import PreferencePair


def evaluate(model, tokenizer, pairs: Sequence[PreferencePair], ids: Mapping[str, list], *, batch_size: int,
             device) -> dict[str, Any]:
    """Rewards of the held-out pairs, computed the way serving computes them (prefloop.scoring)."""
    from prefloop.scoring import rewards_from_ids

    n = len(pairs)
    rewards = rewards_from_ids(model, ids["chosen_ids"] + ids["rejected_ids"], pad_token_id=tokenizer.pad_token_id,
                               batch_size=batch_size, device=device)
    return {"chosen": rewards[:n], "rejected": rewards[n:],
            "length_wins": [_length_vote(p) for p in pairs]}


def _length_vote(pair: PreferencePair) -> float:
    a, b = len(pair.chosen.strip()), len(pair.rejected.strip())
    return 1.0 if a > b else 0.5 if a == b else 0.0


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    return sum(c > r for c, r in zip(chosen, rejected)) / max(1, len(chosen))


def metrics(evaluation: Mapping[str, Any], *, train_pairs: int, eval_pairs: int, runtime_s: float, epochs: float,
            log_history: list[dict], dropped_too_long: int, conversion: Mapping[str, Any] | None) -> dict[str, Any]:
    chosen, rejected = evaluation["chosen"], evaluation["rejected"]
    margins = [c - r for c, r in zip(chosen, rejected)]
    everything = list(chosen) + list(rejected)
    losses = [row["loss"] for row in log_history if "loss" in row]
    return {
        "eval/accuracy": round(pairwise_accuracy(chosen, rejected), 4),
        "eval/margin_mean": round(statistics.fmean(margins), 4),
        "eval/reward_mean": round(statistics.fmean(everything), 4),
        "eval/reward_std": round(statistics.pstdev(everything), 4),
        "eval/length_baseline_accuracy": round(statistics.fmean(evaluation["length_wins"]), 4),
        "eval/pairs": eval_pairs,
        "train/pairs": train_pairs,
        "train/loss_final": round(losses[-1], 4) if losses else None,
        "train/runtime_s": round(runtime_s, 2),
        "train/pairs_per_s": round(train_pairs * epochs / runtime_s, 2) if runtime_s > 0 else None,
        "pairs_used": train_pairs + eval_pairs,
        "pairs_dropped_too_long": dropped_too_long,
        "annotator_agreement": (conversion or {}).get("annotator_agreement"),
    }


def data_statistics(train: Sequence[PreferencePair], held_out: Sequence[PreferencePair],
                    conversion: Mapping[str, Any] | None) -> dict[str, Any]:
    def lengths(pairs, attr):
        values = [len(getattr(p, attr)) for p in pairs]
        return round(statistics.fmean(values), 1) if values else None

    everything = list(train) + list(held_out)
    conversion = dict(conversion or {})
    seen = conversion.pop("seen", {})
    return {
        "pairs": {"train": len(train), "eval": len(held_out)},
        "prompts": {"train": len({p.prompt for p in train}), "eval": len({p.prompt for p in held_out})},
        "mean_chars": {"prompt": lengths(everything, "prompt"), "chosen": lengths(everything, "chosen"),
                       "rejected": lengths(everything, "rejected")},
        "conversion": conversion,
        "annotation_ids": {"train": sorted({i for p in train for i in p.annotation_ids}),
                           "eval": sorted({i for p in held_out for i in p.annotation_ids})},
        "task_ids": {"train": sorted({p.task_id for p in train if p.task_id is not None}),
                     "eval": sorted({p.task_id for p in held_out if p.task_id is not None})},
        "annotations_seen": seen,  # id -> updated_at: how the next run counts new, changed and deleted annotations
    }


def write_all(out: Path, config: Mapping[str, Any], resolved: Mapping[str, Any], metrics_: Mapping[str, Any],
              train: Sequence[PreferencePair], held_out: Sequence[PreferencePair], conversion: Mapping[str, Any] | None,
              log_history: list[dict]) -> None:
    write_json(out / "train_config.json", {"config": dict(config), "resolved": dict(resolved)})
    write_json(out / "metrics.json", dict(metrics_))
    write_json(out / "data.json", data_statistics(train, held_out, conversion))
    plot_curve(log_history, out / "curve.png", metrics_)


def plot_curve(log_history: list[dict], path: Path, final: Mapping[str, Any] | None = None) -> None:
    """Training loss per step and eval accuracy at each evaluation, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(row["step"], row["loss"]) for row in log_history if "loss" in row]
    evals = [(row["step"], row["eval_accuracy"]) for row in log_history if "eval_accuracy" in row]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        if train:
            ax.plot(*zip(*train), label="train loss", color="tab:blue")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("Bradley-Terry loss")
        acc = ax.twinx()
        if evals:
            acc.plot(*zip(*evals), marker="o", label="eval accuracy", color="tab:green")
        acc.set_ylim(0, 1)
        acc.set_ylabel("eval pairwise accuracy")
        title = "reward model"
        if final:
            title += f": eval accuracy {final.get('eval/accuracy')}, longer-answer baseline {final.get('eval/length_baseline_accuracy')}"
        ax.set_title(title, fontsize=9)
        if train or evals:
            fig.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
