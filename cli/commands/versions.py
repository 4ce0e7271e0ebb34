"""`prefloop versions --project ID`: reward-model and policy versions with their metrics;
`--set-current VERSION` makes a published version serve again (an atomic pointer switch); `--pin
VERSION` keeps a version whatever KEEP_VERSIONS says (`--unpin` lets retention delete it again).
A reward version's eval accuracy is shown with its Wilson 95% interval and number of eval pairs, and
compared with the previous reward version: "within noise" when the two intervals overlap."""

from __future__ import annotations

import argparse
import json
from typing import Any

SHOWN = (
    "eval/accuracy",
    "eval/length_baseline_accuracy",
    "eval/margin_mean",
    "annotator_agreement",
    "pairs_used",
    "final_kl",
    "samples_score_gain",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("versions", help="list reward-model and policy versions with metrics; switch the current one")
    p.add_argument("--project", type=int, required=True, help="Label Studio project id")
    p.add_argument("--set-current", metavar="VERSION", help="serve this published version (rm-... or pi-...) again")
    p.add_argument(
        "--pin", metavar="VERSION", help="never delete this version (retention keeps KEEP_VERSIONS per kind)"
    )
    p.add_argument("--unpin", metavar="VERSION", help="let retention delete this version again")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prefloop.artifacts import ArtifactStore, serving_version
    from prefloop.settings import Settings

    settings = Settings.from_env()
    store = ArtifactStore(settings.model_dir, keep_versions=settings.keep_versions)
    if args.set_current:
        current = store.set_current(args.project, _kind(args.set_current), args.set_current)
        print(f"project {args.project} now serves {serving_version(current)}")
        return 0
    if args.pin or args.unpin:
        version = args.pin or args.unpin
        pins = store.pin(args.project, _kind(version), version, pinned=bool(args.pin))
        state = "pinned" if args.pin else "unpinned"
        print(f"project {args.project}: {version} {state}; pinned: {', '.join(pins) or 'none'}")
        return 0
    versions = store.all_versions(args.project)
    if args.json:
        print(json.dumps({"model_version": store.model_version(args.project), "versions": versions}, indent=2))
        return 0
    print(f"project {args.project} serves {store.model_version(args.project)}")
    if not versions:
        print("no published versions yet")
        return 0
    previous = None  # (version, interval) of the last reward version with an accuracy
    for entry in versions:
        metrics = entry.get("metrics") or {}
        shown = _shown(metrics)
        interval = _interval(metrics) if entry["kind"] == "reward" else None
        if interval is not None:
            if previous is not None:
                from prefloop.stats import compare

                verdict = compare(interval, previous[1])
                shown += (
                    f"  (overlaps {previous[0]}: within noise)"
                    if verdict == "overlap"
                    else f"  ({verdict} than {previous[0]})"
                )
            previous = (entry["version"], interval)
        pin = " (pinned)" if entry.get("pinned") else ""
        trainer = f" [{metrics.get('trainer') or 'ppo'}]" if entry["kind"] == "policy" else ""  # which trainer made it
        print(f"{'*' if entry['current'] else ' '} {entry['kind']:<6} {entry['version']}{trainer}{pin}  {shown}")
    return 0


def _kind(version: str) -> str:
    from prefloop.artifacts import VERSION_PREFIX, valid_version_name
    from prefloop.errors import ModelNotFound

    kind = {prefix: kind for kind, prefix in VERSION_PREFIX.items()}.get(version.split("-", 1)[0])
    if kind is None or not valid_version_name(version, kind):
        raise ModelNotFound(
            f"{version[:40]!r}{'...' if len(version) > 40 else ''} is not a version name "
            "(rm-<timestamp> or pi-<timestamp>; `prefloop versions --project ID` lists them)"
        )
    return kind


def _shown(metrics: dict[str, Any]) -> str:
    """The SHOWN metrics (else the first five plain ones), rounded, without empty ones."""
    keys = [key for key in SHOWN if metrics.get(key) is not None]
    if not keys:
        keys = [k for k, v in metrics.items() if v is not None and isinstance(v, (int, float))][:5]
    shown = [f"{key.split('/')[-1]}={_number(metrics[key])}" for key in keys]
    interval = _interval(metrics)
    if interval is not None and "eval/accuracy" in keys:  # accuracy=0.74 [95% CI 0.55-0.87, 27 pairs]
        shown[keys.index("eval/accuracy")] += (
            f" [95% CI {interval[0]:.2f}-{interval[1]:.2f}, {metrics.get('eval/pairs')} pairs]"
        )
    if metrics.get("stopped_early"):
        shown.append("stopped early")
    return "  ".join(shown)


def _interval(metrics: dict[str, Any]) -> tuple[float, float] | None:
    """eval/accuracy's Wilson 95% interval: from metrics.json, or computed from eval/pairs for older versions."""
    from prefloop.stats import accuracy_interval

    acc, n = metrics.get("eval/accuracy"), metrics.get("eval/pairs")
    if not isinstance(acc, (int, float)):
        return None
    low, high = metrics.get("eval/accuracy_ci_low"), metrics.get("eval/accuracy_ci_high")
    if low is not None and high is not None:
        return float(low), float(high)
    return accuracy_interval(float(acc), n) if isinstance(n, int) and n > 0 else None


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.0f}"
