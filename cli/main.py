"""The `prefloop` command. Each subcommand lives in `cli/commands/<name>.py` and exposes
`register(subparsers)`; entry points import the tiers lazily, inside the command that needs them.

Settings are read from the environment here, once, and a bad value stops the command with the
variable's name."""

from __future__ import annotations

import argparse
import importlib
import sys

from prefloop.errors import PrefloopError, SettingsError

COMMANDS = [
    "up", "serve", "worker", "tiny_model", "train_ppo",
    "init", "download_model",
    "import_prompts",
    "export", "train_reward", "versions", "jobs",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefloop", description="Label Studio ML backend that closes the RLHF loop.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cli.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        print(f"prefloop: configuration error: {exc}", file=sys.stderr)
        return 2
    except PrefloopError as exc:
        print(f"prefloop: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
