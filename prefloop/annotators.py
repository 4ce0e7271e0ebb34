"""Per-annotator agreement: with the other annotators' majority and with the reward model.

Input: `ConversionSummary.votes` from prefloop.preferences, one entry per comparison (prompt, the
two answers, {annotator: chosen answer}). For each annotator:

- majority: on comparisons they share with others, how often they chose what the *other*
  annotators' majority chose (leave-one-out, so their own vote does not count for them; a tie among
  the others says nothing and is left out);
- model: how often the reward model's pick (higher reward) equals their choice, over all their
  votes (including pairs the model was trained on; a low value next to others' high ones is the
  signal: someone reads the task differently, or clicks at random).

Each rate comes with its Wilson 95% interval and count (prefloop.stats), so an annotator with
four comparisons is not singled out on noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prefloop.stats import wilson_interval

Comparison = tuple[Any, ...]  # prompt, answer a, answer b, {annotator: chosen text}[, conversation]
ModelPick = Callable[[str, str, str], str | None]  # (prompt, a, b) -> the answer the model prefers


def rate(successes: int, n: int) -> dict[str, Any] | None:
    if n == 0:
        return None
    low, high = wilson_interval(successes, n)
    return {"rate": round(successes / n, 4), "low": round(low, 4), "high": round(high, 4), "n": n}


def annotator_stats(
    comparisons: Iterable[Comparison], model_pick: ModelPick | None = None
) -> dict[str, dict[str, Any]]:
    """{annotator: {"votes", "majority", "model"}}; a rate is None where nothing was measured."""
    counts: dict[str, list[int]] = {}  # votes, majority agree, majority n, model agree, model n
    for item in comparisons:
        prompt, a, b, votes = item[:4]
        model = model_pick(prompt, a, b) if model_pick else None
        for annotator, chosen in votes.items():
            c = counts.setdefault(str(annotator), [0, 0, 0, 0, 0])
            c[0] += 1
            others = [v for k, v in votes.items() if k != annotator]
            same = sum(v == chosen for v in others)
            if others and same * 2 != len(others):
                c[2] += 1
                c[1] += same * 2 > len(others)
            if model is not None:
                c[4] += 1
                c[3] += model == chosen
    return {
        who: {"votes": c[0], "majority": rate(c[1], c[2]), "model": rate(c[3], c[4])}
        for who, c in sorted(counts.items(), key=lambda item: -item[1][0])
    }


def describe(stats: Mapping[str, Mapping[str, Any]], model: str | None = None) -> str:
    """Lines for `prefloop export`'s summary."""
    if not stats:
        return "  per annotator: no votes"

    def shown(r: Mapping[str, Any] | None) -> str:
        return "n/a" if not r else f"{r['rate']:.2f} [{r['low']:.2f}-{r['high']:.2f}] of {r['n']}"

    head = "with the majority of the others"
    lines = [f"  per annotator (votes; agreement {head}" + (f"; with reward model {model}" if model else "") + "):"]
    for who, s in stats.items():
        line = f"    {who:<24} {s['votes']:>5} votes  majority {shown(s.get('majority'))}"
        if model:
            line += f"  model {shown(s.get('model'))}"
        lines.append(line)
    return "\n".join(lines)
