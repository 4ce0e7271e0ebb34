"""What a reward-model run writes next to its weights: evaluation metrics, data statistics with the
annotation ids used, the resolved config, and a PNG of the training curve.

Metric keys (metrics.json, also the job's result and `prefloop versions` output):
  eval/accuracy                  share of held-out pairs where r(chosen) > r(rejected)
  eval/accuracy_ci_low, eval/accuracy_ci_high   its Wilson 95% interval over eval/pairs (prefloop.stats):
                                 27 pairs at 0.37 is [0.22, 0.56], indistinguishable from chance
  eval/margin_mean               mean of r(chosen) - r(rejected) on held-out pairs
  eval/reward_mean, eval/reward_std   over all held-out responses
  eval/length_baseline_accuracy  "the longer answer wins" on the same pairs (ties count half):
                                 a model near this number may have learned length, not preference
  annotator_agreement            P(two annotators agree) where a comparison has several (null if none)
  annotators                     per annotator: votes, agreement with the others' majority and with this
                                 model's picks, each {rate, low, high, n} (prefloop.annotators)
  pairs_used, train/pairs, eval/pairs, train/loss_final, train/runtime_s, train/pairs_per_s
  train/learning_rate            the rate used (from the config, or chosen from the model's size)
  train/epochs, train/steps      how long it trained (up to num_train_epochs; early stopping ends sooner)
  train/best_epoch, train/best_step, train/stopped_early   the evaluation whose weights were kept
  validation/pairs, validation/loss_best   the split (from the training prompts) that chose the length
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefloop.artifacts import write_json
from prefloop.preferences import PreferencePair
from prefloop.stats import accuracy_interval


def evaluate(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    ids: Mapping[str, list[list[int]]],
    *,
    batch_size: int,
    device: Any,
) -> dict[str, Any]:
    """Rewards of the held-out pairs, computed the way serving computes them (prefloop.scoring)."""
    from prefloop.scoring import rewards_from_ids

    n = len(pairs)
    rewards = rewards_from_ids(
        model,
        ids["chosen_ids"] + ids["rejected_ids"],
        pad_token_id=tokenizer.pad_token_id,
        batch_size=batch_size,
        device=device,
    )
    return {"chosen": rewards[:n], "rejected": rewards[n:], "length_wins": [_length_vote(p) for p in pairs]}


def annotator_table(
    model: Any,
    tokenizer: Any,
    votes: Sequence[Any],
    *,
    max_length: int,
    batch_size: int,
    device: Any,
    template: str = "",
) -> dict[str, Any]:
    """Per-annotator agreement with the others' majority and with this model's picks (prefloop.annotators);
    `votes` is `ConversionSummary.votes`, scored as serving scores (prefloop.family.scoring_ids)."""
    from prefloop.annotators import annotator_stats
    from prefloop.family import scoring_ids
    from prefloop.scoring import rewards_from_ids

    items = [(v[0], v[1], v[2]) for v in votes]
    convs = [v[4] if len(v) > 4 and v[4] is not None else v[0] for v in votes]
    ids = [scoring_ids(tokenizer, c, a, template, max_length) for c, (_, a, _) in zip(convs, items)] + [
        scoring_ids(tokenizer, c, b, template, max_length) for c, (_, _, b) in zip(convs, items)
    ]
    rewards = rewards_from_ids(model, ids, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size, device=device)
    n = len(items)
    picks = {item: (item[1] if rewards[i] > rewards[n + i] else item[2]) for i, item in enumerate(items)}
    return annotator_stats(((v[0], v[1], v[2], v[3]) for v in votes), lambda p, a, b: picks.get((p, a, b)))


def _length_vote(pair: PreferencePair) -> float:
    a, b = len(pair.chosen.strip()), len(pair.rejected.strip())
    return 1.0 if a > b else 0.5 if a == b else 0.0


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    return sum(c > r for c, r in zip(chosen, rejected)) / max(1, len(chosen))


def metrics(
    evaluation: Mapping[str, Any],
    *,
    train_pairs: int,
    eval_pairs: int,
    runtime_s: float,
    epochs: float,
    log_history: list[dict[str, Any]],
    dropped_too_long: int,
    conversion: Mapping[str, Any] | None,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    chosen, rejected = evaluation["chosen"], evaluation["rejected"]
    margins = [c - r for c, r in zip(chosen, rejected)]
    everything = list(chosen) + list(rejected)
    losses = [row["loss"] for row in log_history if "loss" in row]
    accuracy = pairwise_accuracy(chosen, rejected)
    low, high = accuracy_interval(accuracy, len(chosen))
    return {
        "eval/accuracy": round(accuracy, 4),
        "eval/accuracy_ci_low": low,
        "eval/accuracy_ci_high": high,
        "eval/margin_mean": round(statistics.fmean(margins), 4),
        "eval/reward_mean": round(statistics.fmean(everything), 4),
        "eval/reward_std": round(statistics.pstdev(everything), 4),
        "eval/length_baseline_accuracy": round(statistics.fmean(evaluation["length_wins"]), 4),
        "eval/pairs": eval_pairs,
        "train/pairs": train_pairs,
        "train/loss_final": round(losses[-1], 4) if losses else None,
        "train/runtime_s": round(runtime_s, 2),
        "train/pairs_per_s": round(train_pairs * epochs / runtime_s, 2) if runtime_s > 0 else None,
        "pairs_used": train_pairs + eval_pairs + int((training or {}).get("validation/pairs") or 0),
        "pairs_dropped_too_long": dropped_too_long,
        "annotator_agreement": (conversion or {}).get("annotator_agreement"),
        **dict(training or {}),
    }


def data_statistics(
    train: Sequence[PreferencePair],
    held_out: Sequence[PreferencePair],
    conversion: Mapping[str, Any] | None,
    validation: Sequence[PreferencePair] = (),
) -> dict[str, Any]:
    def lengths(pairs: Sequence[PreferencePair], attr: str) -> float | None:
        values = [len(getattr(p, attr)) for p in pairs]
        return round(statistics.fmean(values), 1) if values else None

    everything = list(train) + list(validation) + list(held_out)
    conversion = dict(conversion or {})
    seen = conversion.pop("seen", {})
    conversion.pop("votes", None)  # per-annotator results live in metrics.json "annotators"
    sides = {"train": train, "validation": validation, "eval": held_out}
    return {
        "pairs": {name: len(side) for name, side in sides.items()},
        "prompts": {name: len({p.prompt for p in side}) for name, side in sides.items()},
        "mean_chars": {
            "prompt": lengths(everything, "prompt"),
            "chosen": lengths(everything, "chosen"),
            "rejected": lengths(everything, "rejected"),
        },
        "conversion": conversion,
        "annotation_ids": {name: sorted({i for p in side for i in p.annotation_ids}) for name, side in sides.items()},
        "task_ids": {name: sorted({p.task_id for p in side if p.task_id is not None}) for name, side in sides.items()},
        "annotations_seen": seen,  # id -> updated_at: how the next run counts new, changed and deleted annotations
    }


def write_all(
    out: Path,
    config: Mapping[str, Any],
    resolved: Mapping[str, Any],
    metrics_: Mapping[str, Any],
    train: Sequence[PreferencePair],
    held_out: Sequence[PreferencePair],
    conversion: Mapping[str, Any] | None,
    log_history: list[dict[str, Any]],
    validation: Sequence[PreferencePair] = (),
) -> None:
    write_json(out / "train_config.json", {"config": dict(config), "resolved": dict(resolved)})
    write_json(out / "metrics.json", dict(metrics_))
    write_json(out / "data.json", data_statistics(train, held_out, conversion, validation))
    plot_curve(log_history, out / "curve.png", metrics_)


def plot_curve(log_history: list[dict[str, Any]], path: Path, final: Mapping[str, Any] | None = None) -> None:
    """Training and validation loss per epoch (left), validation accuracy (right), the kept
    evaluation marked, and the held-out accuracy with its interval in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    final = final or {}
    train = [(row.get("epoch", row["step"]), row["loss"]) for row in log_history if "loss" in row]
    val_loss = [(row.get("epoch", row["step"]), row["eval_loss"]) for row in log_history if "eval_loss" in row]
    val_acc = [(row.get("epoch", row["step"]), row["eval_accuracy"]) for row in log_history if "eval_accuracy" in row]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    try:
        few = len(train) < 30
        if train:
            ax.plot(*zip(*train), marker="." if few else None, label="train loss", color="tab:blue")
        if val_loss:
            ax.plot(*zip(*val_loss), marker="o", label="validation loss", color="tab:orange")
        ax.axhline(0.6931, color="grey", linestyle=":", linewidth=1, label="chance loss (ln 2)")
        if final.get("train/best_epoch") is not None:
            ax.axvline(final["train/best_epoch"], color="tab:red", linestyle="--", linewidth=1, label="weights kept")
        ax.set_xlabel("epoch")
        ax.set_ylabel("Bradley-Terry loss")
        acc = ax.twinx()
        if val_acc:
            acc.plot(*zip(*val_acc), marker="s", label="validation accuracy", color="tab:green", alpha=0.7)
        acc.set_ylim(0, 1)
        acc.set_ylabel("validation pairwise accuracy")
        ax.set_title(_curve_title(final), fontsize=9)
        handles = ax.get_legend_handles_labels()[0] + acc.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
        if not train and not val_loss:
            ax.text(0.5, 0.5, "no training loss logged", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def _curve_title(final: Mapping[str, Any]) -> str:
    if final.get("eval/accuracy") is None:
        return "reward model"
    title = (
        f"held-out accuracy {final['eval/accuracy']:.2f} [95% CI {final.get('eval/accuracy_ci_low', 0):.2f}-"
        f"{final.get('eval/accuracy_ci_high', 1):.2f}] on {final.get('eval/pairs')} pairs; "
        f"longer-answer baseline {final.get('eval/length_baseline_accuracy')}"
    )
    if final.get("train/learning_rate") is not None:
        title += f"\nlr {final['train/learning_rate']:.2g}, {final.get('train/steps')} steps, "
        title += "stopped early" if final.get("train/stopped_early") else "ran to the epoch cap"
    return title
