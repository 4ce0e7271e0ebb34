"""Prompt files for `prefloop import-prompts`, and the stable key that identifies a prompt.

Formats (by extension):
  .json           an array of records
  .jsonl/.ndjson  one record per line (blank lines are skipped)
  .csv            a header row with a `prompt` column (or `messages`, holding a JSON chat)

A record is a prompt string, {"prompt": "..."}, a chat as a list of {"role", "content"} messages,
or {"messages": [...]}. The whole file is read and checked before anything happens: any bad record
(empty or non-string prompt, malformed line, invalid UTF-8) raises one InputError listing every bad
record with its line number, so nothing is half-imported.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefloop.errors import InputError, LabelConfigError
from prefloop.label_config import LabelConfig
from prefloop.text import validate_messages

GENERATION_FIELD = "prefloop"
"""Key in task.data of the record of how the answers were generated (policy version, settings, seed)."""
FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
MAX_LISTED_ERRORS = 20
_JSON_TYPES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
    list: "an array",
    dict: "an object",
}


@dataclass(frozen=True)
class PromptRecord:
    where: str  # "prompts.jsonl line 3": names the record in messages
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # ((role, content), ...) for a chat

    def task_data(self, config: LabelConfig) -> dict[str, Any]:
        """The prompt part of a task's data for a project with `config`. A plain prompt in a chat-only
        project becomes a one-message user chat; a chat needs a project that shows chats."""
        if self.messages is not None:
            if not config.chat_field:
                raise LabelConfigError(
                    f"{self.where} is a chat, but the project's label config shows no dialogue: "
                    'use label_config/pairwise_chat.xml (a <Paragraphs value="$messages"/>)'
                )
            return {config.chat_field: [{"role": r, "content": c} for r, c in self.messages]}
        if config.prompt_field:
            return {config.prompt_field: self.prompt}
        assert config.chat_field is not None  # every parsed config has a prompt field, a chat field or both
        return {config.chat_field: [{"role": "user", "content": self.prompt}]}


def prompt_key(data: dict[str, Any], config: LabelConfig) -> str | None:
    """A stable hash of a task's prompt or chat (None when it has neither): what `import-prompts`
    compares to skip prompts a project already holds, and part of each task's sampling seed."""
    chat = data.get(config.chat_field) if config.chat_field else None
    if isinstance(chat, list) and chat:
        canonical: Any = {"messages": [[m.get("role"), m.get("content")] for m in chat if isinstance(m, dict)]}
    elif config.prompt_field and isinstance(data.get(config.prompt_field), str) and data[config.prompt_field]:
        canonical = {"prompt": data[config.prompt_field]}
    else:
        return None
    blob = json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def read_prompts(path: str | Path) -> list[PromptRecord]:
    """Every record of a prompt file, or InputError naming the file and each bad record."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown prompt file type {path.suffix!r}; use .json, .jsonl or .csv")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the prompt file: {exc.strerror or exc}") from None
    text = _decode(raw, path)
    records, errors = [], []
    items = {"json": _json_items, "jsonl": _jsonl_items, "csv": _csv_items}[fmt](text, path)
    for where, value in items:
        if isinstance(value, InputError):
            errors.append(str(value))
            continue
        try:
            records.append(parse_record(value, where))
        except InputError as exc:
            errors.append(str(exc))
    if errors:
        listed = "\n  ".join(errors[:MAX_LISTED_ERRORS])
        more = f"\n  ... and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else ""
        raise InputError(
            f"{path}: {len(errors)} bad record(s); nothing was imported. Fix them and run again:\n  {listed}{more}"
        )
    if not records:
        raise InputError(f"{path} holds no prompts")
    return records


def parse_record(value: Any, where: str) -> PromptRecord:
    if isinstance(value, str):
        return _prompt(value, where)
    if isinstance(value, list):
        return _chat(value, where)
    if isinstance(value, dict):
        if "prompt" in value and "messages" in value:
            raise InputError(f'{where}: has both "prompt" and "messages"; keep one')
        if "prompt" in value:
            if not isinstance(value["prompt"], str):
                raise InputError(f'{where}: "prompt" must be a string, got {_json_type(value["prompt"])}')
            return _prompt(value["prompt"], where)
        if "messages" in value:
            return _chat(value["messages"], where)
        hint = (
            ' (a single message: a chat is a list of them, or {"messages": [...]})'
            if {"role", "content"} <= value.keys()
            else ""
        )
        raise InputError(f'{where}: an object record needs a "prompt" or "messages" key{hint}')
    raise InputError(
        f'{where}: a record must be a prompt string, {{"prompt": ...}} or a chat (a list of '
        f'{{"role", "content"}} messages), got {_json_type(value)}'
    )


def _prompt(text: str, where: str) -> PromptRecord:
    if not text.strip():
        raise InputError(f"{where}: the prompt is empty")
    return PromptRecord(where, prompt=text)


def _chat(value: Any, where: str) -> PromptRecord:
    messages = validate_messages(value, where)
    return PromptRecord(where, messages=tuple((m["role"], m["content"]) for m in messages))


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(
            f"{path} line {line}: invalid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); "
            "save the file as UTF-8 and run again; nothing was imported"
        ) from None


def _json_items(text: str, path: Path) -> Iterator[tuple[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path} line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}; nothing was imported"
        ) from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON array of prompts, got {_json_type(data)}")
    # json.loads validated the text; walk it again with raw_decode to know each element's line.
    decoder, i, line = json.JSONDecoder(), text.index("[") + 1, 1 + text.count("\n", 0, text.index("["))
    for _ in data:
        while text[i] in " \t\r\n,":
            line += text[i] == "\n"
            i += 1
        value, end = decoder.raw_decode(text, i)
        yield f"{path} line {line}", value
        line += text.count("\n", i, end)
        i = end


def _jsonl_items(text: str, path: Path) -> Iterator[tuple[str, Any]]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"{path} line {n}", json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"{path} line {n}", InputError(f"{path} line {n}: not valid JSON (column {exc.colno}): {exc.msg}")


def _csv_items(text: str, path: Path) -> Iterator[tuple[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise InputError(f"{path} line 1: not valid CSV: {exc}") from None
    if "prompt" not in header and "messages" not in header:
        raise InputError(
            f"{path}: a CSV prompt file needs a header row with a 'prompt' column "
            f"(or 'messages' holding a JSON chat); found {header}"
        )
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield f"{path} line {start}", InputError(f"{path} line {start}: not valid CSV: {exc}")
            return
        where = f"{path} line {start}"
        if None in row:
            yield where, InputError(f"{where}: has more fields than the header")
        elif (row.get("prompt") or "").strip() and (row.get("messages") or "").strip():
            yield where, InputError(f"{where}: has both a prompt and messages; keep one")
        elif "messages" in row and (row.get("messages") or "").strip():
            try:
                yield where, {"messages": json.loads(row["messages"])}
            except json.JSONDecodeError as exc:
                yield where, InputError(f"{where}: the messages column is not valid JSON: {exc.msg}")
        else:
            yield where, row.get("prompt") or ""
