"""Answer-pair generation: prefloop's batched engine vs the seed's loop, side by side in one run.

The seed (Label Studio's RLHF blog) called `pipeline("text-generation")` once per prompt with
`num_return_sequences=2`. prefloop batches GENERATION_BATCH_SIZE prompts per `generate` call, both
samples of a prompt as rows of that call, left-padded, with the KV cache (bf16 on a GPU). Both sides
use the same model, prompts, max_new_tokens and sampling (top_k=50, temperature 1); each side is
timed over the whole prompt set after a warm-up, --repeats times, and the median is reported.

    .venv/bin/python bench/bench_generation.py                        # tiny GPT-2, 64 prompts, CPU
    .venv/bin/python bench/bench_generation.py --gpt2-size --prompts 256 --batch-size 64   # GPU

--gpt2-size builds GPT2Config() (124M parameters, 50,257-token vocabulary) with random weights and
a local byte-level BPE padded to that vocabulary: no download. Prompt token counts therefore differ
from real GPT-2's; generated token counts do not (max_new_tokens, EOS is rare with random weights).
Writes bench/results/bench_generation.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOPICS = [
    "the stock market",
    "the economy",
    "new developments in technology",
    "cats and dogs",
    "the weather",
    "how a language model works",
    "music at school",
    "a good breakfast",
    "history",
    "the ocean",
    "learning to code",
    "a trip to the mountains",
    "electric cars",
    "the moon",
    "gardening",
    "chess",
]
TEMPLATES = [
    "What is the latest news on {}?",
    "Tell me something about {}.",
    "Write a short story about {}.",
    "Explain {} to a child, step by step, in simple words and with one example.",
]


def make_prompts(n: int) -> list[str]:
    return [
        TEMPLATES[i % len(TEMPLATES)].format(TOPICS[(i // len(TEMPLATES)) % len(TOPICS)])
        + ("" if i < 64 else f" ({i})")
        for i in range(n)
    ]


def build_gpt2_size(out: Path) -> Path:
    """GPT2Config() defaults with random weights, and a BPE trained on local text, its vocabulary padded with
    filler tokens to GPT-2's 50,257 so every sampled id decodes to text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.implementations import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    config = GPT2Config()
    trained = ByteLevelBPETokenizer()
    corpus = [t.format(topic) for t in TEMPLATES for topic in TOPICS] * 4
    trained.train_from_iterator(corpus, vocab_size=2000, min_frequency=1, show_progress=False)
    vocab = trained.get_vocab()
    merges = [
        tuple(line.split(" "))
        for line in Path(trained.save_model(tempfile.mkdtemp())[1]).read_text().splitlines()[1:]
        if line
    ]
    rng, letters = random.Random(0), "abcdefghijklmnopqrstuvwxyz"
    while len(vocab) < config.vocab_size - 1:
        word = "Ġ" + "".join(rng.choice(letters) for _ in range(rng.randint(3, 8)))
        vocab.setdefault(word, len(vocab))
    vocab["<|endoftext|>"] = config.vocab_size - 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    special = "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=special,
        eos_token=special,
        unk_token=special,
        model_max_length=config.n_positions,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(run, repeats: int) -> float:
    times = sorted(run() for _ in range(repeats))
    return times[len(times) // 2]


def seed_loop(model_dir: Path, prompts: list[str], max_new_tokens: int, device, repeats: int = 1) -> float:
    """The blog's generate_examples(): one pipeline call per prompt, two sequences each (fp32, as it ran)."""
    from transformers import pipeline, set_seed

    generator = pipeline("text-generation", model=str(model_dir), device=device)
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        num_return_sequences=2,
        do_sample=True,
        top_k=50,
        pad_token_id=generator.tokenizer.eos_token_id,
    )
    generator(prompts[0], **kwargs)  # warm-up
    set_seed(42)

    def run() -> float:
        sync(device)
        start = time.perf_counter()
        for prompt in prompts:
            result = generator(prompt, **kwargs)
            [r["generated_text"].removeprefix(prompt).strip() for r in result]
        sync(device)
        return time.perf_counter() - start

    return median_time(run, repeats)


def prefloop_engine(
    model_dir: Path,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    device,
    fp32: bool = False,
    repeats: int = 1,
) -> tuple[float, dict]:
    from worker.generation import Generator, SamplingConfig, task_seed

    gen = Generator.load(str(model_dir), "pi-base")
    if fp32:
        gen.model.to(device)
    else:
        gen.to(str(device))
    config = SamplingConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
    seeds = [task_seed(p) for p in prompts]
    gen.generate(prompts[:batch_size], seeds[:batch_size], config)  # warm-up
    results = []

    def run() -> float:
        sync(device)
        start = time.perf_counter()
        results[:] = gen.generate(prompts, seeds, config)
        sync(device)
        return time.perf_counter() - start

    elapsed = median_time(run, repeats)
    stats = {
        "dtype": str(next(gen.model.parameters()).dtype),
        "resampled": sum(r.tries > 1 for r in results),
        "failed": sum(r.answers is None for r in results),
    }
    return elapsed, stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per generate() call (prefloop)")
    parser.add_argument("--gpt2-size", action="store_true", help="GPT2Config() defaults, random weights (for a GPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side; the median is reported")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for both sides (1: stable numbers on a shared 2-core machine)",
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "bench_generation.json"))
    args = parser.parse_args()

    import torch
    import transformers

    from cli.tinymodel import build_tiny_gpt2
    from prefloop.models import resolve_device

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    prompts = make_prompts(args.prompts)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_gpt2_size(Path(tmp)) if args.gpt2_size else build_tiny_gpt2(Path(tmp))
        params = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(tmp).parameters())
        seed_s = seed_loop(model_dir, prompts, args.max_new_tokens, device, args.repeats)
        ours_s, stats = prefloop_engine(
            model_dir, prompts, args.max_new_tokens, args.batch_size, device, repeats=args.repeats
        )
        rows = {"seed_loop": seed_s, "prefloop": ours_s}
        if device.type == "cuda":  # separate batching from bf16
            rows["prefloop_fp32"], _ = prefloop_engine(
                model_dir, prompts, args.max_new_tokens, args.batch_size, device, fp32=True, repeats=args.repeats
            )
    report = {
        "model": "gpt2-size (GPT2Config(), random weights)" if args.gpt2_size else "tiny GPT-2 (2 layers, 64 wide)",
        "parameters": params,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "prefloop_stats": stats,
        "results": {
            name: {"seconds": round(s, 3), "prompts_per_s": round(len(prompts) / s, 2)} for name, s in rows.items()
        },
        "ratio": round(seed_s / ours_s, 2),
    }
    if "prefloop_fp32" in rows:
        report["ratio_fp32"] = round(seed_s / rows["prefloop_fp32"], 2)
    for name, r in report["results"].items():
        print(f"{name:>14}: {r['prompts_per_s']:8.2f} prompts/s  ({r['seconds']:.2f} s for {len(prompts)} prompts)")
    print(f"{'ratio':>14}: {report['ratio']:.1f}x  (prefloop / seed loop, {report['model']}, {device})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
