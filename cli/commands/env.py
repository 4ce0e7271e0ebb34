"""`prefloop env`: the settings of the stack `prefloop up` runs, as shell `export` lines, for a shell
in another directory: `eval "$(prefloop env --state-dir /path/to/.prefloop)"`. (Commands started
where `prefloop up` ran find them without this: cli/main.py reads `.prefloop/env`.)"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("env", help="print the running `prefloop up` stack's settings as shell export lines")
    p.add_argument("--state-dir", help="`prefloop up`'s state directory (default $PREFLOOP_STATE_DIR or .prefloop)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli.localstack import STATE_DIR_VAR, find_stack_env, read_stack_env, stack_env_file

    if args.state_dir:
        path: Path | None = stack_env_file(Path(args.state_dir))
    else:
        path = find_stack_env(os.environ)
    if path is None or not path.is_file():
        where = path or Path(os.environ.get(STATE_DIR_VAR) or ".prefloop") / "env"
        print(f"prefloop env: no {where}: start the stack with `prefloop up` (or pass --state-dir)", file=sys.stderr)
        return 1
    state_dir = path.parent.resolve()
    print(f"export {STATE_DIR_VAR}={shlex.quote(str(state_dir))}")
    for key, value in read_stack_env(path).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0
