"""GRPO or RLOO outside the queue, e.g. on several GPUs:

    accelerate launch --multi_gpu --num_processes N -m worker.online --trainer grpo --policy gpt2 \\
        --reward MODEL_DIR/3/reward/rm-... --prompts prompts.jsonl --out ./policy-out --set steps=200
    python -m worker.online --trainer rloo ...                                          # one device

Prompt files are those `prefloop import-prompts` reads (.json, .jsonl, .csv; prompts or chats).
Each process samples its own prompts_per_step x num_generations answers per step; DDP averages the
gradients; the main process writes the directory, a complete policy version.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import cast


def main(argv: list[str] | None = None) -> int:
    from prefloop.family import Conversation
    from prefloop.knobs import parse_set
    from prefloop.logs import setup_logging
    from prefloop.prompts import read_prompts
    from worker.online.train import KNOBS, train_online

    ap = argparse.ArgumentParser(prog="python -m worker.online", description=__doc__.splitlines()[0])
    ap.add_argument("--trainer", choices=sorted(KNOBS), required=True)
    ap.add_argument("--policy", required=True, help="starting policy: a model directory or hub name")
    ap.add_argument("--reward", required=True, help="reward model directory (a published reward version)")
    ap.add_argument("--prompts", required=True, help="prompt file (.json, .jsonl or .csv)")
    ap.add_argument("--out", required=True, help="output directory for the policy and its report")
    ap.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE", help="knob override (repeatable)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    setup_logging("INFO")
    config = KNOBS[args.trainer].from_overrides(parse_set(args.set))
    prompts = [
        # read_prompts gives every record without messages its prompt text
        Conversation.of(
            cast(str, r.prompt) if r.messages is None else [{"role": a, "content": b} for a, b in r.messages]
        )
        for r in read_prompts(args.prompts)
    ]
    metrics = train_online(
        args.trainer,
        prompts,
        policy_source=args.policy,
        reward_source=args.reward,
        out_dir=args.out,
        config=config,
        device=args.device,
        base_model=args.policy,
    )
    from accelerate import PartialState

    if PartialState().is_main_process:  # under `accelerate launch` every process returns the same metrics
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
