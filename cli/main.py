"""The `prefloop` command. Each subcommand lives in `cli/commands/<name>.py` and exposes
`register(subparsers)`; entry points import the tiers lazily, inside the command that needs them.

Settings are read from the environment here, once, and a bad value stops the command with the
variable's name. Where none of the stack's settings (cli/localstack.py STACK_KEYS) is set, a command
uses the stack `prefloop up` runs: the settings it wrote to ./.prefloop/env (or
$PREFLOOP_STATE_DIR/env), and says so on stderr.

Output into a closed pipe (`prefloop jobs | head`) ends the command quietly, as other Unix tools do."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from prefloop.errors import PrefloopError, SettingsError

COMMANDS = [
    "up",
    "serve",
    "worker",
    "tiny_model",
    "train_ppo",
    "train_policy",
    "init",
    "download_model",
    "import_prompts",
    "export",
    "train_reward",
    "versions",
    "jobs",
    "env",
    "doctor",
]
OWN_SETTINGS = {"up", "env"}
"""Commands that do not read the local stack's env file: `up` writes it, `env` prints it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefloop", description="Label Studio ML backend that closes the RLHF loop.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cli.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in OWN_SETTINGS:
        from cli.localstack import apply_stack_env

        used = apply_stack_env(os.environ)
        if used is not None:
            print(f"prefloop: using the local stack of `prefloop up` (settings from {used})", file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (`| head`): stop writing. Point stdout at /dev/null so the
        # interpreter's final flush does not raise a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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
