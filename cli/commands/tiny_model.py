"""`prefloop tiny-model DIR`: build a tiny GPT-2 offline (for tests and the offline quickstart)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("tiny-model", help="build a tiny GPT-2 (2 layers, byte-level BPE) into DIR, offline")
    p.add_argument("dir")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.set_defaults(func=run)


def run(args) -> int:
    from cli.tinymodel import build_tiny_gpt2

    out = build_tiny_gpt2(args.dir, n_layer=args.layers, n_embd=args.width)
    print(f"tiny GPT-2 written to {out} (load it with BASE_MODEL={out})")
    return 0
