"""`prefloop tiny-model DIR [--family gpt2|llama|qwen2|bert]`: build a tiny model offline (for tests
and the offline quickstart)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cli.tinymodel import FAMILIES

    p = sub.add_parser(
        "tiny-model",
        help="build a tiny model (2 layers, trained tokenizer, random weights) into DIR, "
        "offline: GPT-2, a Llama- or Qwen2-style chat model, or a BERT-style encoder",
    )
    p.add_argument("dir")
    p.add_argument(
        "--family",
        choices=FAMILIES,
        default="gpt2",
        help="gpt2 (default), llama or qwen2 (causal LMs with a chat template), bert (reward backbone)",
    )
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cli.tinymodel import build_tiny

    out = build_tiny(args.family, args.dir, n_layer=args.layers, n_embd=args.width)
    setting = "REWARD_BASE_MODEL" if args.family == "bert" else "BASE_MODEL"
    print(f"tiny {args.family} model written to {out} (load it with {setting}={out})")
    return 0
