"""PPO outside the queue, e.g. on several GPUs:

    accelerate launch -m worker.ppo --policy gpt2 --reward MODEL_DIR/3/reward/rm-... \\
        --prompts prompts.jsonl --out ./policy-out --set steps=200 --set rollout_batch_size=32

Prompt files are those `prefloop import-prompts` reads (.json, .jsonl, .csv; prompts or chats).
Each process rolls out its own `rollout_batch_size` episodes per step; DDP averages gradients. The
result is a directory generation can load (publish it by copying it under MODEL_DIR if wanted).
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import cast


def main(argv: list[str] | None = None) -> int:
    from prefloop.family import Conversation, LoraSettings
    from prefloop.knobs import parse_set
    from prefloop.models import read_base_model_name
    from prefloop.prompts import read_prompts
    from prefloop.settings import Settings
    from worker.ppo.config import PPOConfig
    from worker.ppo.run import train_policy

    p = argparse.ArgumentParser(
        prog="python -m worker.ppo", description="Train a policy with PPO against a reward model."
    )
    p.add_argument("--policy", required=True, help="starting policy: a model directory or hub name")
    p.add_argument("--reward", required=True, help="reward model directory (a published reward version)")
    p.add_argument("--prompts", required=True, help="prompt file (.json, .jsonl or .csv)")
    p.add_argument("--out", required=True, help="output directory for the policy and its report")
    p.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE", help="override a PPO knob (repeatable)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()  # LORA_* and CHAT_TEMPLATE, as the job reads them
    overrides = parse_set(args.set)
    config = PPOConfig.from_overrides(overrides)
    prompts = [
        # read_prompts gives every record without messages its prompt text
        Conversation.of(
            cast(str, r.prompt) if r.messages is None else [{"role": a, "content": b} for a, b in r.messages]
        )
        for r in read_prompts(args.prompts)
    ]  # rendered by the policy's own tokenizer (prefloop.family)
    metrics = train_policy(
        prompts,
        policy_source=args.policy,
        reward_source=args.reward,
        out_dir=args.out,
        config=config,
        device=args.device,
        lora=LoraSettings.from_settings(settings),
        template=settings.chat_template,
        base_model=read_base_model_name(args.policy) or args.policy,
    )
    print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
