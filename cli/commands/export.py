"""`prefloop export --project ID -o FILE`: the project's current annotations as preference pairs, in
TRL's explicit-prompt JSONL format (`prompt`, `chosen`, `rejected`; `prompt + chosen` is exactly the
text prefloop's reward model scores), with a summary of what was kept and dropped, and why.

`--tasks-file` converts a Label Studio JSON export instead of reading the project through the API.
Ranking projects (label_config/ranking.xml) export the K(K-1)/2 pairs each ranking implies.

The summary ends with a line per annotator: votes, agreement with the other annotators' majority and,
with `--project` and a published reward model, with that model's picks, each with its Wilson 95%
interval and count (prefloop/annotators.py); `--no-model` skips the scoring."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefloop.annotators import Comparison, ModelPick
    from prefloop.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export", help="write the project's preference pairs as TRL-ready JSONL (prompt/chosen/rejected)"
    )
    p.add_argument("--project", type=int, help="Label Studio project id (read through its API)")
    p.add_argument("-o", "--output", required=True, help="JSONL file to write ('-' for stdout)")
    p.add_argument("--tasks-file", help="a Label Studio JSON export to convert instead of reading the API")
    p.add_argument(
        "--label-config",
        help="label config XML file (default: the project's; with --tasks-file, label_config/ranking.xml "
        "when the export holds rankings, else label_config/pairwise.xml)",
    )
    p.add_argument("--with-ids", action="store_true", help="add task_id, annotation_ids and votes to each record")
    p.add_argument(
        "--no-model", action="store_true", help="do not score the votes with the project's current reward model"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prefloop.errors import InputError
    from prefloop.label_config import load_label_config, parse_label_config
    from prefloop.preferences import tasks_to_pairs
    from prefloop.settings import Settings

    settings = Settings.from_env()
    if args.project is None and not args.tasks_file:
        raise SystemExit("prefloop export: give --project ID (read from Label Studio) or --tasks-file EXPORT.json")
    xml = Path(args.label_config).read_text() if args.label_config else None
    if args.tasks_file:
        try:
            tasks = json.loads(Path(args.tasks_file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{args.tasks_file}: cannot read a Label Studio JSON export ({exc})") from None
        if not isinstance(tasks, list):
            raise InputError(f"{args.tasks_file}: a Label Studio JSON export is a list of tasks")
        xml = xml or load_label_config("ranking" if _ranked(tasks) else "pairwise")
    else:
        from prefloop.labelstudio import LabelStudioClient

        client = LabelStudioClient(settings)
        xml = xml or client.get_label_config(args.project)
        tasks = client.iter_tasks(args.project, fields="all")
    pairs, summary = tasks_to_pairs(tasks, parse_label_config(xml), settings.chat_template)  # pairs or rankings
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    try:
        for pair in pairs:
            record: dict[str, Any] = pair.trl_record()
            if args.with_ids:
                record.update(task_id=pair.task_id, annotation_ids=list(pair.annotation_ids), votes=list(pair.votes))
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    print(summary.describe(), file=sys.stderr)
    print(annotator_summary(settings, args, summary.votes), file=sys.stderr)
    if args.output != "-":
        print(f"wrote {len(pairs)} pairs to {args.output}", file=sys.stderr)
    return 0


def annotator_summary(settings: Settings, args: argparse.Namespace, votes: Sequence[Comparison]) -> str:
    """Per-annotator agreement lines; with the project's current reward model's picks when there is one."""
    from prefloop.annotators import annotator_stats, describe

    scored = not args.no_model and args.project is not None
    version, pick = _model_picks(settings, args.project, votes) if scored else (None, None)
    return describe(annotator_stats(votes, pick), version)


def _model_picks(
    settings: Settings, project_id: int, votes: Sequence[Comparison]
) -> tuple[str, ModelPick] | tuple[None, None]:
    """(version, (prompt, a, b) -> preferred answer) from the current reward model, or (None, None)."""
    from prefloop.artifacts import ArtifactStore
    from prefloop.scoring import RewardScorer

    path = ArtifactStore(settings.model_dir).current_path(project_id, "reward")
    if path is None or not path.is_dir() or not votes:
        return None, None
    print(
        f"scoring {len(votes)} comparisons with reward model {path.name} for the per-annotator summary "
        "(--no-model skips this)",
        file=sys.stderr,
    )
    scorer = RewardScorer(path, device=settings.device, batch_size=settings.predict_batch_size)
    prompts = [v[4] if len(v) > 4 and v[4] is not None else v[0] for v in votes]
    picks = scorer.prefer(prompts, [v[1] for v in votes], [v[2] for v in votes])
    chosen = {(v[0], v[1], v[2]): (v[1] if side == "left" else v[2]) for v, (side, _) in zip(votes, picks)}
    return path.name, lambda p, a, b: chosen.get((p, a, b))


def _ranked(tasks: list[Any]) -> bool:
    """An export without --label-config holds rankings when its annotations carry Ranker results
    (the shipped ranking.xml is then the interface that wrote them), else pairwise choices."""
    return any(
        isinstance(region, dict) and region.get("type") == "ranker"
        for task in tasks
        if isinstance(task, dict)
        for annotation in task.get("annotations") or []
        if isinstance(annotation, dict)
        for region in annotation.get("result") or []
    )
