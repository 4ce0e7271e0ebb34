"""DPO outside the queue, e.g. on several GPUs:

    accelerate launch --multi_gpu --num_processes N -m worker.dpo --pairs pairs.jsonl --policy gpt2 \\
        --out ./policy-out --set beta=0.1
    python -m worker.dpo --pairs pairs.jsonl --policy ./tiny --out ./policy-out          # one device

`--pairs` is what `prefloop export` writes (prompt/chosen/rejected JSONL); `--reward` (optional) is
a reward-model directory whose scores go into samples.json. Each process trains on its share of
every batch; DDP averages gradients; the main process writes the directory, a complete policy
version (publish it by copying it under MODEL_DIR/<project>/policy/ and `prefloop versions --set-current`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from prefloop.knobs import parse_set
    from prefloop.logs import setup_logging
    from worker.dpo.config import DPOKnobs
    from worker.dpo.train import train_dpo
    from worker.reward.__main__ import read_pairs

    ap = argparse.ArgumentParser(prog="python -m worker.dpo", description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True, help="JSONL from `prefloop export`")
    ap.add_argument("--policy", required=True, help="starting policy: a model directory or hub name")
    ap.add_argument("--out", type=Path, required=True, help="directory to write the trained policy and its report into")
    ap.add_argument("--reward", help="reward-model directory to score samples.json with (optional)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="DPO knob override (repeatable)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    setup_logging("INFO")
    config = DPOKnobs.from_overrides(parse_set(args.set))
    metrics = train_dpo(
        read_pairs(args.pairs),
        args.policy,
        args.out,
        config,
        reward_source=args.reward,
        device=args.device,
        base_model=args.policy,
    )
    from accelerate import PartialState

    if PartialState().is_main_process:  # under `accelerate launch` every process returns the same metrics
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
