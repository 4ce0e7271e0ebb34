"""A tiny GPT-2 built locally: a byte-level BPE trained on local text and a 2-layer config.

No weights can be downloaded on these machines. Tests and the offline quickstart use this model
through the same `from_pretrained(directory)` path production uses for `gpt2`.
"""

from __future__ import annotations

from pathlib import Path

# A small English corpus so the BPE learns real merges; the model itself starts random.
_CORPUS = """
The quick brown fox jumps over the lazy dog. What is the latest news on the stock market?
What is the current state of the economy? What are the latest developments in technology?
Label Studio helps people annotate data. A reward model learns which answer people prefer.
The policy generates two answers and the annotator picks the better one. Thank you for asking.
I think the answer is yes, because the data shows a clear trend. No, that is not right.
Please explain how a language model works. It predicts the next token from the previous ones.
Good morning! How can I help you today? The weather is sunny and warm, with a light breeze.
Cats and dogs are popular pets. Science, history, music and art are subjects at school.
""" * 4


def build_tiny_gpt2(out_dir: str | Path, *, n_layer: int = 2, n_embd: int = 64, n_head: int = 2,
                    n_positions: int = 256, vocab_size: int = 512, seed: int = 0) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_CORPUS.splitlines(), vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                        model_max_length=n_positions)
    eos_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=eos_id, eos_token_id=eos_id)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
