"""The DPO job of a project: Label Studio's current annotations -> preference pairs (exactly as
reward training reads them: majority over annotators, skips and ties dropped) -> DPO from the
current policy -> a published policy version.

In the loop (POLICY_TRAINER=dpo) annotation events queue it; it runs when at least
DPO_MIN_NEW_ANNOTATIONS annotations changed since the last DPO version (the Train button and
`prefloop train-policy` force it). It needs no reward model; when one exists, samples.json
carries its scores. With `on_policy` (iterative DPO) only pairs whose answers the current policy
wrote (each filled task records it in data["prefloop"]["policy_version"], worker/prefill.py)
are used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefloop.artifacts import BASE_POLICY, ArtifactStore, read_json, write_json
from prefloop.errors import JobSkipped
from prefloop.family import LoraSettings
from prefloop.prompts import GENERATION_FIELD
from prefloop.settings import Settings
from worker.dpo.config import DPOKnobs
from worker.trainers import contract

logger = logging.getLogger(__name__)


def last_seen(store: ArtifactStore, project_id: int) -> dict[str, str]:
    """Annotation snapshot (id -> updated_at) of the newest published DPO policy."""
    for entry in reversed(store.versions(project_id, "policy")):
        if (entry.get("metrics") or {}).get("trainer") == "dpo":
            return dict(
                (read_json(store.version_dir(project_id, "policy", entry["version"]) / "data.json") or {}).get(
                    "annotations_seen"
                )
                or {}
            )
    return {}


def written_by(tasks: list[dict[str, Any]], version: str) -> set[int]:
    """Ids of the tasks whose answers the policy `version` wrote."""
    out = set()
    for task in tasks:
        meta = (task.get("data") or {}).get(GENERATION_FIELD)
        if isinstance(meta, dict) and meta.get("policy_version") == version and not meta.get("error"):
            out.add(task["id"])
    return out


def dpo_job(
    settings: Settings,
    project_id: int,
    *,
    forced: bool = False,
    force: bool = False,
    on_change: bool = False,
    config: dict[str, Any] | None = None,
    reason: str = "",
    **_: Any,
) -> dict[str, Any]:
    """`force`: train whatever changed; `on_change` (the Train button): train when at least one
    annotation changed since the last DPO policy; otherwise DPO_MIN_NEW_ANNOTATIONS must have."""
    from prefloop.label_config import parse_label_config
    from prefloop.labelstudio import LabelStudioClient
    from prefloop.preferences import count_changes, tasks_to_pairs
    from worker.runtime import Progress

    progress = Progress("reading annotations")
    store = ArtifactStore(settings.model_dir, keep_versions=settings.keep_versions)
    store.sweep_staging(project_id)
    knobs, skip = contract.knobs(
        DPOKnobs, "dpo", project_id, {"max_new_tokens": settings.max_new_tokens, **(config or {})}
    )
    if skip:
        return skip
    client = LabelStudioClient(settings)
    tasks = list(client.iter_tasks(project_id, fields="all"))
    pairs, summary = tasks_to_pairs(
        tasks, parse_label_config(client.get_label_config(project_id)), settings.chat_template
    )  # pairwise or ranking: the pairs reward training reads
    changes = count_changes(last_seen(store, project_id), summary.seen)
    base = {"changes": changes, "pairs": len(pairs), "conversion": summary.as_dict()}
    needed = 1 if on_change else settings.dpo_min_new_annotations
    if not (force or forced) and changes < needed:
        bar = "the Train button needs one" if on_change else f"DPO_MIN_NEW_ANNOTATIONS={needed}"
        return contract.skipped(
            "dpo",
            project_id,
            f"{changes} new or changed annotation(s) since the last DPO "
            f"policy, fewer than {bar} (`prefloop train-policy --trainer dpo --force` trains "
            "anyway)",
            **base,
        )
    start = contract.starting_policy(settings, store, project_id)
    missing = contract.missing_adapter_base(start["policy_source"])
    if missing:
        return contract.skipped(
            "dpo",
            project_id,
            f"the policy is a LoRA adapter on base model {missing!r}, which "
            "is not there any more: restore that directory (or retrain)",
            **base,
        )
    if knobs.on_policy:
        version = start["policy_version"] or BASE_POLICY
        mine = written_by(tasks, version)
        pairs = [p for p in pairs if p.task_id in mine]
        base["on_policy_pairs"] = len(pairs)
        if len(pairs) < knobs.min_pairs:
            return contract.skipped(
                "dpo",
                project_id,
                f"on_policy: only {len(pairs)} pair(s) have answers written by "
                f"the current policy {version}; DPO needs at least {knobs.min_pairs} (min_pairs)",
                **base,
            )
    elif len(pairs) < knobs.min_pairs:
        return contract.skipped(
            "dpo",
            project_id,
            f"only {len(pairs)} usable preference pair(s); DPO needs at least {knobs.min_pairs} (min_pairs)",
            **base,
        )
    reward_version = store.current(project_id).get("reward")
    reward_dir = store.kind_dir(project_id, "reward") / reward_version if reward_version else None

    def report(done: int, total: int, stage: str) -> None:
        progress.total = total
        progress.update(done, stage=f"dpo {stage}", force=done in (0, total))

    def train(staged: Path) -> dict[str, Any]:
        from worker.dpo.train import train_dpo

        metrics = train_dpo(
            pairs,
            start["policy_source"],
            staged,
            knobs,
            reward_source=reward_dir,
            device=settings.device,
            base_model=start["base_model"],
            lora=LoraSettings.from_settings(settings),
            template=settings.chat_template,
            progress=report,
            extra_config={
                "project_id": project_id,
                "reason": reason,
                "policy_version": start["policy_version"],
                "base_model": start["base_model"],
            },
        )
        write_json(
            staged / "data.json",
            {
                "annotations_seen": summary.seen,
                "conversion": summary.as_dict(),
                "task_ids": sorted({p.task_id for p in pairs if p.task_id is not None}),
            },
        )
        progress.update(1, stage="publishing", force=True)
        return metrics

    try:
        return contract.train_and_publish(
            settings,
            store,
            project_id,
            "dpo",
            train,
            policy_version=start["policy_version"],
            reward_version=reward_version,
            **base,
        )
    except JobSkipped as exc:
        return contract.skipped("dpo", project_id, str(exc), **base)
