"""The generation job: fill the answer pairs of a project's tasks through Label Studio's API.

Triggered by TASKS_CREATED and by /predict for tasks without answers. With regenerate=True (PPO
queues that after publishing a policy) or REGENERATE_AFTER_PPO, it also refreshes answers that
prefloop wrote with an older policy on tasks nobody has annotated. It reads the label config and
tasks back from Label Studio (never from the webhook), so a repeated webhook finds nothing left to
do. One run fills at most GENERATION_CHUNK_SIZE tasks and queues a follow-up run when more remain,
so an import of 5,000 tasks is processed in chunks with progress in each job's status.

Each filled task keeps its data and gains both answers plus `data["prefloop"]`: the policy
version and model that wrote them, the sampling settings, the seed and the prompt key. A task
whose answers cannot be made distinct gets only that record with "error" and is not retried for
the same policy version and prompt (a new policy, or an edited prompt, tries again).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prefloop.errors import InputError
from prefloop.jobkinds import JobKind
from prefloop.label_config import LabelConfig, answers_wanted, parse_label_config, with_answers
from prefloop.labelstudio import LabelStudioClient
from prefloop.prompts import GENERATION_FIELD as META_FIELD
from prefloop.prompts import prompt_key
from prefloop.queue import JobQueue
from prefloop.settings import Settings
from prefloop.text import has_answers, task_conversation
from worker.generation import Generator, SamplingConfig, task_seed
from worker.policy import current_policy, policy_generator
from worker.predictions import push_after, queue_unpredicted
from worker.runtime import Progress

logger = logging.getLogger(__name__)


def fill_answers(
    settings: Settings,
    project_id: int,
    *,
    reason: str = "",
    regenerate: bool = False,
    client: LabelStudioClient | None = None,
    queue: JobQueue | None = None,
) -> dict[str, Any]:
    """Fill (or with `regenerate`, refresh) one chunk of tasks; returns counts for the job result.
    A failure a retry cannot fix (prefloop.jobkinds.PERMANENT_ERRORS) fails the job once (worker/jobs.py)."""
    return _fill(
        settings, project_id, reason, regenerate, client or LabelStudioClient(settings), queue or JobQueue(settings)
    )


def _fill(
    settings: Settings, project_id: int, reason: str, regenerate: bool, client: LabelStudioClient, queue: JobQueue
) -> dict[str, Any]:
    config = parse_label_config(client.get_label_config(project_id))
    # With REGENERATE_AFTER_PPO every run refreshes outdated answers, so a regeneration request that
    # was coalesced into a waiting run, or split into chunks, still happens.
    requested, regenerate = regenerate, regenerate or settings.regenerate_after_ppo
    _, version = current_policy(settings, project_id)
    listed = list(client.iter_tasks(project_id, fields="task_only"))
    pending = [t for t in listed if _wants(t, config, version, regenerate)]
    chunk = pending[: settings.generation_chunk_size]
    remaining = len(pending) - len(chunk)
    result: dict[str, Any] = {
        "status": "done",
        "reason": reason,
        "policy_version": version,
        "regenerate": regenerate,
        "filled": 0,
        "failed": 0,
        "skipped": 0,
        "remaining": remaining,
        "follow_up": None,
    }
    if chunk:
        gen = policy_generator(settings, project_id)
        result.update(policy_version=gen.version, model_loaded_pid=gen.loaded_pid, job_pid=os.getpid())
        written: list[dict[str, Any]] = []
        result.update(_fill_chunk(settings, client, config, gen, chunk, regenerate, remaining, written))
        if written:  # the serving reward model's picks for the new answers, replacing any for the old ones
            result["predictions"] = push_after(
                settings, project_id, "a generation chunk", client=client, queue=queue, tasks=written, replace=True
            )
    if remaining:
        extra = {"regenerate": True} if requested else {}
        result["follow_up"] = queue.enqueue(
            JobKind.GENERATE, project_id, reason=f"continue: {remaining} task(s) left", rate_limited=False, **extra
        ).job_id
    result["predict_job"] = queue_unpredicted(settings, queue, project_id, listed, config, {t["id"] for t in chunk})
    logger.info("project %s: %s", project_id, {k: v for k, v in result.items() if k != "reason"})
    return result


def _fill_chunk(
    settings: Settings,
    client: LabelStudioClient,
    config: LabelConfig,
    gen: Generator,
    chunk: list[dict[str, Any]],
    regenerate: bool,
    remaining: int,
    written: list[dict[str, Any]],
) -> dict[str, int]:
    """Generate and write one chunk; each task given answers is appended to `written` with its new data."""
    sampling = SamplingConfig.from_settings(settings)
    progress = Progress("generating answers", total=len(chunk))
    counts = {"filled": 0, "failed": 0, "skipped": 0}
    prompts, seeds, names, tasks = [], [], [], []
    for task in chunk:
        key = prompt_key(task["data"], config)
        try:
            prompts.append(task_conversation(task["data"], config))
        except InputError as exc:
            logger.warning("task %s has no usable prompt: %s", task["id"], exc)
            _write(client, task, config, None, {"error": str(exc), "policy_version": gen.version, "prompt_key": key})
            counts["failed"] += 1
            continue
        seeds.append(task_seed(key, task["id"]))
        names.append(f"of task {task['id']}")
        tasks.append((task, key))
    results = gen.generate(
        prompts,
        seeds,
        sampling,
        names,
        on_batch=lambda done: progress.update(done, remaining=remaining),
        template=settings.chat_template,
        k=answers_wanted(config, settings.answers_per_prompt),
    )
    progress.update(0, stage="writing answers to Label Studio", force=True)
    for n, ((task, key), res) in enumerate(zip(tasks, results), 1):
        if regenerate and _annotated(client.get_task(task["id"])):
            counts["skipped"] += 1  # annotated while we generated: its answers are someone's judgement now
            continue
        data = _write(client, task, config, res.answers, {**gen.metadata(sampling, res), "prompt_key": key})
        counts["filled" if res.answers else "failed"] += 1
        if res.answers:
            written.append({**task, "data": data})
        progress.update(n, remaining=remaining)
    progress.update(len(tasks), force=True, remaining=remaining)
    return counts


def _write(
    client: LabelStudioClient,
    task: dict[str, Any],
    config: LabelConfig,
    answers: tuple[str, ...] | None,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """PATCH the task's data: everything it held, plus the answers (when there are some) and the record;
    returns the data written."""
    data = dict(task["data"]) if answers is None else with_answers(task["data"], config, answers)
    data[META_FIELD] = meta
    client.update_task_data(task["id"], data)
    return data


def _wants(task: dict[str, Any], config: LabelConfig, version: str, regenerate: bool) -> bool:
    data: dict[str, Any] = task.get("data") or {}
    recorded = data.get(META_FIELD)
    meta: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    if not has_answers(data, config):
        gave_up = (
            meta.get("error")
            and meta.get("policy_version") == version
            and meta.get("prompt_key") == prompt_key(data, config)
        )
        return not gave_up
    # Answers exist. Only a regeneration replaces them: answers prefloop wrote with an older policy,
    # on tasks nobody annotated (answers a user imported are data, never overwritten).
    return regenerate and bool(meta) and meta.get("policy_version") != version and not _annotated(task)


def _annotated(task: dict[str, Any]) -> bool:
    return bool(task.get("total_annotations") or task.get("cancelled_annotations") or task.get("annotations"))
