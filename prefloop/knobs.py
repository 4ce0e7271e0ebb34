"""Trainer configs: one way to declare a knob, read `--set KEY=VALUE`, convert, save and list.

Every trainer (reward model, PPO, and any other policy trainer) declares a frozen dataclass that
inherits `Knobs` and whose fields are made with `knob(default, help)`. The command line, the job
and the saved `*_config.json` all go through `parse_set` and `from_overrides`, so a value means
the same thing wherever it is given:

- `none`, `null` or an empty value is None; `true/false/yes/no/on/off/1/0` for booleans;
  integers and floats by the field's type; anything else stays a string.
- An unknown knob name or a value of the wrong type raises InputError naming the knob.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from prefloop.errors import InputError

K = TypeVar("K", bound="Knobs")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def knob(default: Any, help: str) -> Any:
    """A dataclass field with its help text (shown by `--knobs` and in the README)."""
    return dataclasses.field(default=default, metadata={"help": help})


def parse_set(items: Iterable[str], *, option: str = "--set") -> dict[str, str]:
    """`["a=1", "b=x"]` -> `{"a": "1", "b": "x"}`; a missing `=` or name is an InputError."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"{option} expects KEY=VALUE, got {item!r}")
        out[name.strip()] = value
    return out


class Knobs:
    """Mixin for frozen dataclasses of trainer knobs."""

    label: ClassVar[str] = "config"  # how errors name this config, e.g. "PPO config"

    @classmethod
    def from_overrides(cls: type[K], overrides: Mapping[str, Any] | None = None, **defaults: Any) -> K:
        """Defaults (then `defaults`, e.g. from settings) with `overrides` applied; strings are converted."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values: dict[str, Any] = {}
        for source in (defaults, overrides or {}):
            for name, raw in source.items():
                if name not in fields:
                    raise InputError(f"{cls.label} has no knob {name!r}; known: {', '.join(sorted(fields))}")
                values[name] = _convert(cls.label, name, fields[name], raw)
        try:
            return cls(**values)
        except TypeError as exc:
            raise InputError(f"{cls.label}: {exc}") from None

    @classmethod
    def overrides_from_set(cls, items: Iterable[str]) -> dict[str, Any]:
        """`--set KEY=VALUE` items, checked against the whole config and converted: what a job
        is queued with, so a bad knob is refused before anything is queued."""
        raw = parse_set(items)
        config = cls.from_overrides(raw)
        return {name: getattr(config, name) for name in raw}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload,no-any-return]

    @classmethod
    def describe(cls) -> list[tuple[str, Any, str]]:
        """(name, default, help) of every knob, for `--knobs` and the README."""
        return [(f.name, f.default, f.metadata.get("help", "")) for f in dataclasses.fields(cls)]  # type: ignore[arg-type]


def _convert(label: str, name: str, field: dataclasses.Field[Any], raw: Any) -> Any:
    types = str(field.type)
    if not isinstance(raw, str):
        if isinstance(raw, bool) and "bool" not in types:
            raise InputError(f"{label}: {name}={raw!r} is not valid: expected {types}")
        return raw
    text = raw.strip()
    if types == "str":  # a word such as tracking=none is that word
        return text
    if text.lower() in ("none", "null", ""):
        if "None" not in types and field.default is not None:
            raise InputError(f"{label}: {name} cannot be None (expected {types})")
        return None
    try:
        if "bool" in types:
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError("expected true or false")
            return text.lower() in _TRUE
        if "int" in types and "float" not in types:
            return int(text)
        if "float" in types:
            return float(text)
        return text
    except ValueError as exc:
        raise InputError(f"{label}: {name}={raw!r} is not valid: {exc}") from None
