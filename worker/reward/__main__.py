"""Train a reward model outside the queue, e.g. on several GPUs:

    accelerate launch -m worker.reward --pairs pairs.jsonl --base-model gpt2 --out ./rm --set learning_rate=2e-5
    python -m worker.reward --pairs pairs.jsonl --base-model ./tiny --out ./rm        # one device

`--pairs` is what `prefloop export` writes (prompt/chosen/rejected JSONL). The settings the queued job
reads apply here too, from the environment: `REWARD_BASE_MODEL` (then `BASE_MODEL`) when
`--base-model` is not given, LoRA (`LORA_R` > 0, `LORA_ALPHA`, `LORA_DROPOUT`,
`LORA_TARGET_MODULES`: the version then holds the adapter and its base's name) and `CHAT_TEMPLATE`.
The output directory is a complete version (weights, tokenizer, train_config.json, metrics.json,
data.json, curve.png); to serve it, copy it into MODEL_DIR/<project>/reward/ under a new rm-... name and run
`prefloop versions --project ID --set-current rm-...`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def read_pairs(path: Path) -> list[dict[str, Any]]:
    from prefloop.errors import InputError

    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pairs.append(
                {
                    "prompt": record["prompt"],
                    "chosen": record["chosen"],
                    "rejected": record["rejected"],
                    "task_id": record.get("task_id"),
                    "annotation_ids": record.get("annotation_ids") or (),
                }
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{path}:{number}: not a prompt/chosen/rejected record ({exc})") from None
    return pairs


def main(argv: list[str] | None = None) -> int:
    from prefloop.family import LoraSettings
    from prefloop.knobs import parse_set
    from prefloop.logs import setup_logging
    from prefloop.settings import Settings
    from worker.reward import RewardTrainConfig, train_reward

    ap = argparse.ArgumentParser(prog="python -m worker.reward", description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True, help="JSONL from `prefloop export`")
    ap.add_argument(
        "--base-model", help="hub name or local directory (e.g. gpt2; default: REWARD_BASE_MODEL, else BASE_MODEL)"
    )
    ap.add_argument("--out", type=Path, required=True, help="directory to write the trained reward model into")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="RewardTrainConfig override")
    args = ap.parse_args(argv)
    setup_logging("INFO")
    settings = Settings.from_env()
    config = RewardTrainConfig.from_overrides(parse_set(args.set))
    metrics = train_reward(
        read_pairs(args.pairs),
        args.base_model or settings.reward_base,
        args.out,
        config,
        chat_template=settings.chat_template,
        lora=LoraSettings.from_settings(settings),
    )
    if metrics:
        print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
