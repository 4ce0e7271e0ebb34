"""`prefloop import-prompts FILE --project ID`: generate both answers for every prompt of a file and
import complete tasks into a Label Studio project.

The file is read and checked whole before anything else (a bad record stops the run with its line
number; nothing is imported), then the project's label config is checked for the fields prefloop
fills. Prompts the project already holds (same prompt or chat, whoever imported it) and repeats
within the file are skipped, so a re-run, or a run resumed after an interruption, adds only what is
missing: each chunk is generated, then imported in one request, which Label Studio applies whole.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefloop.label_config import LabelConfig
    from prefloop.labelstudio import LabelStudioClient
    from prefloop.prompts import PromptRecord
    from prefloop.settings import Settings
    from worker.generation import Generator, SamplingConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import-prompts",
        help="generate answer pairs for a prompt file (JSON, JSONL, CSV) and "
        "import complete tasks into a Label Studio project",
    )
    p.add_argument("file", help="prompts: .json array, .jsonl or .csv; each record a prompt or a chat")
    p.add_argument("--project", type=int, required=True, help="Label Studio project id")
    p.add_argument("--chunk-size", type=int, help="tasks per import request (default: GENERATION_CHUNK_SIZE)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs installed (types-tqdm)

    from prefloop.errors import PrefloopError
    from prefloop.label_config import parse_label_config
    from prefloop.labelstudio import LabelStudioClient
    from prefloop.prompts import read_prompts
    from prefloop.settings import Settings

    settings = Settings.from_env()
    chunk_size = args.chunk_size or settings.generation_chunk_size
    if chunk_size < 1:
        raise SystemExit("prefloop: --chunk-size must be at least 1")
    records = read_prompts(args.file)
    client = LabelStudioClient(settings)
    config = parse_label_config(client.get_label_config(args.project))  # pairwise or ranking
    todo, present, repeats = _plan(records, client, args.project, config)
    print(
        f"{len(records)} prompt(s) in {args.file}: {present} already in project {args.project}, "
        f"{repeats} repeated in the file, {len(todo)} to import",
        file=sys.stderr,
    )
    if not todo:
        return 0
    from worker.generation import Generator, SamplingConfig  # entry point: the job tier, lazily
    from worker.policy import current_policy

    source, version = current_policy(settings, args.project)
    gen = Generator.load(source, version).to(settings.device)
    sampling = SamplingConfig.from_settings(settings)
    imported, failed = 0, []
    with tqdm(total=len(todo), unit="prompt", desc=f"{version} -> project {args.project}") as bar:
        try:
            for start in range(0, len(todo), chunk_size):
                tasks, bad = _generate(gen, sampling, settings, config, todo[start : start + chunk_size])
                failed += bad
                if tasks:
                    client.import_tasks(args.project, tasks)
                imported += len(tasks)
                bar.update(len(tasks) + len(bad))
        except (KeyboardInterrupt, PrefloopError) as exc:
            bar.close()
            what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by an error"
            print(
                f"{what} after importing {imported} task(s); run the same command again to import the rest",
                file=sys.stderr,
            )
            raise
    print(f"imported {imported} task(s) into project {args.project} with answers from {version}", file=sys.stderr)
    if failed:
        print(
            f"{len(failed)} prompt(s) got no two distinct answers and were not imported: " + "; ".join(failed[:10]),
            file=sys.stderr,
        )
        return 1
    return 0


def _plan(
    records: list[PromptRecord], client: LabelStudioClient, project_id: int, config: LabelConfig
) -> tuple[list[tuple[PromptRecord, dict[str, Any], str | None]], int, int]:
    """(record, prompt data, key) to import; how many the project already holds; repeats in the file."""
    from prefloop.prompts import prompt_key

    planned = [(r, r.task_data(config)) for r in records]  # LabelConfigError before any work
    existing = {prompt_key(t.get("data") or {}, config) for t in client.iter_tasks(project_id, fields="task_only")}
    todo, seen, present, repeats = [], set(), 0, 0
    for record, data in planned:
        key = prompt_key(data, config)
        if key in existing:
            present += 1
        elif key in seen:
            repeats += 1
        else:
            seen.add(key)
            todo.append((record, data, key))
    return todo, present, repeats


def _generate(
    gen: Generator,
    sampling: SamplingConfig,
    settings: Settings,
    config: LabelConfig,
    chunk: Sequence[tuple[PromptRecord, dict[str, Any], str | None]],
) -> tuple[list[dict[str, Any]], list[str]]:
    from prefloop.label_config import answers_wanted, with_answers
    from prefloop.prompts import GENERATION_FIELD
    from prefloop.text import task_conversation
    from worker.generation import task_seed

    prompts = [task_conversation(data, config) for _, data, _ in chunk]
    results = gen.generate(
        prompts,
        [task_seed(key) for _, _, key in chunk],
        sampling,
        names=[record.where for record, _, _ in chunk],
        template=settings.chat_template,
        k=answers_wanted(config, settings.answers_per_prompt),
    )
    tasks, failed = [], []
    for (record, data, key), res in zip(chunk, results):
        if res.answers is None:
            failed.append(f"{record.where}: {res.error}")
            continue
        meta = {**gen.metadata(sampling, res), "prompt_key": key, "source": "import-prompts"}
        tasks.append({"data": {**with_answers(data, config, res.answers), GENERATION_FIELD: meta}})
    return tasks, failed
