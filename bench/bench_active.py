"""Least certain first against random order: reward-model accuracy as labels accumulate.

A scripted annotator labels pairs from a pool, a reward model is trained from scratch on the labels
so far at each budget (as each prefloop reward version is: `train_reward` with today's defaults,
its own eval and validation splits included), and its pairwise accuracy is measured on a fixed
held-out set nobody labels. Two orders, side by side, several seeds:

  random:         the next pairs are drawn at random from the pool
  least_certain:  the first budget is random; after that the next pairs are the pool's pairs where
                  the current reward model is least sure (|r(a) - r(b)| smallest, i.e. its
                  preference probability closest to 0.5): what the "Least certain first" Data
                  Manager tab (ordered by prediction score, lowest first) hands annotators

Data: the tiny offline GPT-2 (`prefloop up` without a model hub) answers each prompt twice; the
scripted annotator prefers the more readable answer (fewer garbled non-ASCII characters; ties are
never shown). The 2-layer random model is what keeps this to minutes on a CPU.

    .venv/bin/python bench/bench_active.py [--budgets 25,50,100,200,400] [--seeds 3] [--held-out 250]

Prints the table and how many labels least-certain-first needs to reach the accuracy random order
reaches with the largest budget; writes bench/results/bench_active.json and bench_active.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
STRATEGIES = ("random", "least_certain")


def pool(base: Path, held_out: int, seed: int = 0) -> tuple[list, list]:
    """(pool, held-out) of (prompt, a, b, 0 if a is preferred else 1), ties dropped."""
    from bench.bench_few_pairs import PREFERENCES, answers, prompts

    texts = prompts(2000)
    first, second = answers(base, texts, seed=1), answers(base, texts, seed=2)
    items = [(p, a, b, PREFERENCES["readable"](a, b)) for p, a, b in zip(texts, first, second)]
    items = [i for i in items if i[3] is not None]
    random.Random(seed).shuffle(items)
    return items[held_out:], items[:held_out]


def as_pair(item, index: int):
    from prefloop.preferences import PreferencePair

    prompt, a, b, pick = item
    chosen, rejected = (a, b) if pick == 0 else (b, a)
    return PreferencePair(prompt, chosen, rejected, task_id=index, annotation_ids=(index,))


def margins(model_dir: Path, items: list) -> list[float]:
    """r(a) - r(b) for each item, scored as serving scores."""
    from prefloop.scoring import RewardScorer

    scorer = RewardScorer(model_dir, device="cpu", batch_size=64)
    prompts = [i[0] for i in items]
    left, right = scorer.score(prompts, [i[1] for i in items]), scorer.score(prompts, [i[2] for i in items])
    return [lft - rgt for lft, rgt in zip(left, right)]


def accuracy(m: list[float], items: list) -> float:
    return sum((0 if x > 0 else 1) == i[3] for x, i in zip(m, items)) / len(items)


def run(
    strategy: str, seed: int, budgets: list[int], base: Path, candidates: list, held: list, work: Path
) -> list[dict]:
    from worker.reward import train_reward

    rng = random.Random(seed)
    order = list(range(len(candidates)))
    rng.shuffle(order)
    labelled: list[int] = []
    rows = []
    for budget in budgets:
        need = budget - len(labelled)
        taken = set(labelled)
        if strategy == "random" or not labelled:
            labelled += [i for i in order if i not in taken][:need]
        else:  # the previous model's least certain pairs among those nobody labelled yet
            rest = [i for i in order if i not in taken]
            scores = margins(work / f"{strategy}-{seed}-{len(labelled)}", [candidates[i] for i in rest])
            labelled += [i for _, i in sorted(zip((abs(s) for s in scores), rest))[:need]]
        out = work / f"{strategy}-{seed}-{budget}"
        started = time.perf_counter()
        metrics = train_reward(
            [as_pair(candidates[i], i) for i in labelled], base, out, {"device": "cpu", "seed": seed}
        )
        acc = accuracy(margins(out, held), held)
        rows.append(
            {
                "strategy": strategy,
                "seed": seed,
                "labels": budget,
                "held_out_accuracy": round(acc, 4),
                "eval/accuracy": metrics["eval/accuracy"],
                "eval/pairs": metrics["eval/pairs"],
                "train/steps": metrics["train/steps"],
                "wall_s": round(time.perf_counter() - started, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def labels_to_reach(target: float, budgets: list[int], curve: list[float]) -> float | None:
    """Labels at which a mean accuracy curve first reaches `target` (linear between budgets)."""
    for i, (b, acc) in enumerate(zip(budgets, curve)):
        if acc >= target:
            if i == 0:
                return float(b)
            b0, a0 = budgets[i - 1], curve[i - 1]
            return b0 + (b - b0) * (target - a0) / (acc - a0)
    return None


def plot_title(seeds: int, verdict: str) -> str:
    return f"readable-answer preference, tiny GPT-2, {seeds} seeds\n{verdict}"


def plot(summary: dict, budgets: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for strategy, style in zip(STRATEGIES, ("tab:grey", "tab:green")):
        means, stds = summary[strategy]["mean"], summary[strategy]["std"]
        ax.errorbar(
            budgets,
            means,
            yerr=stds,
            marker="o",
            capsize=4,
            color=style,
            label=strategy.replace("_", "-") + " (mean ± sd over seeds)",
        )
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(budgets)
    ax.set_xticklabels([str(b) for b in budgets])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("labelled pairs")
    ax.set_ylabel("held-out pairwise accuracy")
    ax.set_ylim(0.4, 1.0)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    import torch

    from cli.tinymodel import build_tiny_gpt2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="25,50,100,200,400")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--held-out", type=int, default=250)
    ap.add_argument("--replot", action="store_true", help="redraw the plot from bench/results/bench_active.json")
    args = ap.parse_args()
    if args.replot:
        saved = json.loads((RESULTS / "bench_active.json").read_text())
        plot(
            saved["summary"],
            saved["budgets"],
            RESULTS / "bench_active.png",
            plot_title(saved["args"]["seeds"], saved["verdict"]),
        )
        return 0
    budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    if not budgets or budgets[0] < 10:
        raise SystemExit("bench_active: --budgets must be comma-separated counts of at least 10 pairs")
    torch.set_num_threads(2)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = build_tiny_gpt2(work / "tiny-gpt2")
        candidates, held = pool(base, args.held_out)
        if len(candidates) < budgets[-1]:
            raise SystemExit(f"bench_active: the pool has {len(candidates)} pairs, fewer than the largest budget")
        rows = [
            r
            for seed in range(args.seeds)
            for strategy in STRATEGIES
            for r in run(strategy, seed, budgets, base, candidates, held, work)
        ]
    summary = {}
    for strategy in STRATEGIES:
        per_budget = [
            [r["held_out_accuracy"] for r in rows if r["strategy"] == strategy and r["labels"] == b] for b in budgets
        ]
        summary[strategy] = {
            "mean": [round(statistics.fmean(v), 4) for v in per_budget],
            "std": [round(statistics.pstdev(v), 4) for v in per_budget],
        }
    target = summary["random"]["mean"][-1]
    reach = labels_to_reach(target, budgets, summary["least_certain"]["mean"])
    print(f"\nheld-out accuracy on {len(held)} pairs, pool {len(candidates)}, {args.seeds} seeds (mean ± sd)")
    print(f"{'labels':>7}  " + "  ".join(f"{s:>16}" for s in STRATEGIES))
    for i, b in enumerate(budgets):
        print(
            f"{b:>7}  " + "  ".join(f"{summary[s]['mean'][i]:>9.3f} ± {summary[s]['std'][i]:.3f}" for s in STRATEGIES)
        )
    saved = None if reach is None else round(budgets[-1] - reach)
    verdict = (
        f"least-certain-first reaches random order's {budgets[-1]}-label accuracy ({target:.3f}) at "
        f"{reach:.0f} labels: {saved} labels ({saved / budgets[-1]:.0%}) saved"
        if reach is not None
        else f"least-certain-first does not reach random order's {budgets[-1]}-label accuracy ({target:.3f})"
    )
    print(verdict)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(summary, budgets, RESULTS / "bench_active.png", plot_title(args.seeds, verdict))
    (RESULTS / "bench_active.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "budgets": budgets,
                "pool": len(candidates),
                "held_out": len(held),
                "summary": summary,
                "labels_to_reach_random_at_max": reach,
                "labels_saved": saved,
                "verdict": verdict,
                "wall_s": round(time.perf_counter() - started, 1),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "runs": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote bench/results/bench_active.json and bench_active.png ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
