"""One module per `prefloop` subcommand, each with `register(subparsers)`."""

from __future__ import annotations

from typing import Any


def print_knobs(config: Any) -> int:
    """`--knobs`: every knob of a trainer config with its default and help text."""
    for name, default, help in config.describe():
        print(f"{name:28} {default!s:10} {help}")
    return 0
