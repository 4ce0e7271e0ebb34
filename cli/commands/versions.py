"""`prefloop versions --project ID`: reward-model and policy versions with their metrics;
`--set-current VERSION` makes a published version serve again (an atomic pointer switch)."""

from __future__ import annotations

import json

SHOWN = ("eval/accuracy", "eval/length_baseline_accuracy", "eval/margin_mean", "annotator_agreement", "pairs_used")


def register(sub) -> None:
    p = sub.add_parser("versions", help="list reward-model and policy versions with metrics; switch the current one")
    p.add_argument("--project", type=int, required=True, help="Label Studio project id")
    p.add_argument("--set-current", metavar="VERSION", help="serve this published version (rm-... or pi-...) again")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from prefloop.artifacts import ArtifactStore, serving_version
    from prefloop.settings import Settings

    store = ArtifactStore(Settings.from_env().model_dir)
    if args.set_current:
        kind = {"rm": "reward", "pi": "policy"}.get(args.set_current.split("-", 1)[0])
        if kind is None:
            raise SystemExit(f"prefloop versions: {args.set_current!r} is not a version name (rm-... or pi-...)")
        current = store.set_current(args.project, kind, args.set_current)
        print(f"project {args.project} now serves {serving_version(current)}")
        return 0
    versions = store.all_versions(args.project)
    if args.json:
        print(json.dumps({"model_version": store.model_version(args.project), "versions": versions}, indent=2))
        return 0
    print(f"project {args.project} serves {store.model_version(args.project)}")
    if not versions:
        print("no published versions yet")
        return 0
    for entry in versions:
        metrics = entry.get("metrics") or {}
        shown = "  ".join(f"{key.split('/')[-1]}={metrics[key]}" for key in SHOWN if metrics.get(key) is not None)
        if not shown and metrics:
            shown = "  ".join(f"{k}={v}" for k, v in list(metrics.items())[:5] if not isinstance(v, (dict, list)))
        print(f"{'*' if entry['current'] else ' '} {entry['kind']:<6} {entry['version']}  {shown}")
    return 0
