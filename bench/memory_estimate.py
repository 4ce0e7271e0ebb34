#!/usr/bin/env python3
"""Estimated GPU memory of prefloop's training jobs for GPT-2, a 0.5B and a 1B instruct model, with
and without LoRA. An estimate, not a measurement (no GPU was available when it was written):

- parameters are counted exactly, by building each architecture on PyTorch's meta device from its
  published config (GPT-2; Qwen2.5-0.5B-Instruct; Llama-3.2-1B-Instruct), LoRA adapters by peft
  with prefloop's defaults (r=LORA_R, the family's q/k/v/o projections, c_attn/c_proj for GPT-2);
- state, bytes per parameter: PPO full fine-tuning keeps fp32 master weights (4), gradients (4),
  AdamW moments (8) and a frozen fp32 reference (4) = 20; PPO with LoRA keeps the fp32 base (4) and
  no reference (the adapter is disabled instead), plus 16 per adapter parameter; reward training
  is the same without a reference (16 full, 4 + 16 per adapter parameter with LoRA); generation
  holds bf16 weights (2);
- activations of one PPO micro-batch (16 episodes of 192 prompt + 50 response tokens, bf16
  autocast, no checkpointing): 34 * tokens * hidden * layers bytes (Korthikanti et al., 2022,
  attention by SDPA so no s^2 term) plus three fp32 copies of the response logits (B * 50 * vocab);
  reward training: 2 * 8 pairs of 256 tokens, one fp32 score per sequence.

`python bench/memory_estimate.py [--lora-r 16]` prints the table and writes bench/results/memory_estimate.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

GiB = 1024**3
MODELS = {
    "gpt2 (124M)": ("gpt2", dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)),
    "Qwen2.5-0.5B-Instruct": (
        "qwen2",
        dict(
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            vocab_size=151936,
            tie_word_embeddings=True,
            max_position_embeddings=32768,
        ),
    ),
    "Llama-3.2-1B-Instruct": (
        "llama",
        dict(
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=128256,
            tie_word_embeddings=True,
            max_position_embeddings=131072,
        ),
    ),
}


def counts(family: str, kwargs: dict, lora_r: int) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from prefloop.family import LoraSettings
    from prefloop.models import with_lora

    config = AutoConfig.for_model(family, **kwargs)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    adapted = with_lora(model, LoraSettings(r=lora_r), "causal_lm", base_model="meta")
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    return {
        "parameters": total,
        "lora_parameters": trainable,
        "hidden": hidden,
        "layers": layers,
        "vocab": config.vocab_size,
    }


def estimate(c: dict) -> dict:
    P, L = c["parameters"], c["lora_parameters"]
    ppo_act = 34 * 16 * 242 * c["hidden"] * c["layers"] + 3 * 16 * 50 * c["vocab"] * 4
    rm_act = 34 * 16 * 256 * c["hidden"] * c["layers"]
    return {
        "generation_gib": round((2 * P) / GiB, 2),
        "ppo_full_gib": round((20 * P + ppo_act) / GiB, 1),
        "ppo_lora_gib": round((4 * P + 16 * L + ppo_act) / GiB, 1),
        "reward_full_gib": round((16 * P + rm_act) / GiB, 1),
        "reward_lora_gib": round((4 * P + 16 * L + rm_act) / GiB, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lora-r", type=int, default=16)
    args = parser.parse_args()
    rows = {}
    for name, (family, kwargs) in MODELS.items():
        c = counts(family, kwargs, args.lora_r)
        rows[name] = {**c, **estimate(c)}
        r = rows[name]
        print(
            f"{name:24} {c['parameters'] / 1e6:7.0f}M params, LoRA r={args.lora_r}: "
            f"{c['lora_parameters'] / 1e6:5.2f}M | generate {r['generation_gib']:5.2f} GiB | "
            f"PPO full {r['ppo_full_gib']:5.1f}, LoRA {r['ppo_lora_gib']:5.1f} GiB | "
            f"reward full {r['reward_full_gib']:5.1f}, LoRA {r['reward_lora_gib']:5.1f} GiB"
        )
    out = Path(__file__).parent / "results" / "memory_estimate.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"lora_r": args.lora_r, "measured": False, "models": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
