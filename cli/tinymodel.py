"""Tiny models built locally, one per family prefloop is tested with: GPT-2 (no chat template),
Llama-style and Qwen2-style causal LMs (each with its family's chat template, its special tokens
and a list of EOS ids in generation_config.json), and a BERT-style encoder for the reward model.

No weights can be downloaded on these machines. Tests and the offline quickstart use these models
through the same `from_pretrained(directory)` path production uses for hub models. Tokenizers are
trained with `tokenizers` on a small local corpus (so they learn real merges); weights are random.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# A small English corpus so the BPE learns real merges; the model itself starts random.
_CORPUS = (
    """
The quick brown fox jumps over the lazy dog. What is the latest news on the stock market?
What is the current state of the economy? What are the latest developments in technology?
Label Studio helps people annotate data. A reward model learns which answer people prefer.
The policy generates two answers and the annotator picks the better one. Thank you for asking.
I think the answer is yes, because the data shows a clear trend. No, that is not right.
Please explain how a language model works. It predicts the next token from the previous ones.
Good morning! How can I help you today? The weather is sunny and warm, with a light breeze.
Cats and dogs are popular pets. Science, history, music and art are subjects at school.
"""
    * 4
)

LLAMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
QWEN2_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
FAMILIES = ("gpt2", "llama", "qwen2", "bert")


def _bpe(special: list[str], vocab_size: int) -> Tokenizer:
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        _CORPUS.splitlines(), vocab_size=vocab_size, min_frequency=1, special_tokens=special, show_progress=False
    )
    return cast("Tokenizer", bpe._tokenizer)  # a Tokenizer; BaseTokenizer leaves the attribute untyped


def _save(out_dir: str | Path, model: Any, tokenizer: Any) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_gpt2(
    out_dir: str | Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 256,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """GPT-2: one <|endoftext|> token (BOS = EOS, no pad), no chat template."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # unannotated __init__
        tokenizer_object=_bpe(["<|endoftext|>"], vocab_size),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=n_positions,
    )
    eos_id = cast(int, tokenizer.convert_tokens_to_ids("<|endoftext|>"))  # one token: one id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    torch.manual_seed(seed)
    return _save(out_dir, GPT2LMHeadModel(config), tokenizer)


def build_tiny_llama(
    out_dir: str | Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_positions: int = 256,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Llama-3-instruct style: BOS added to plain text, a header/eot chat template, tokenizer EOS =
    <|eot_id|>, EOS ids [<|end_of_text|>, <|eot_id|>] in the configs, no pad token, grouped-query
    attention, no `n_positions` (context from max_position_embeddings)."""
    import torch
    from tokenizers.processors import TemplateProcessing
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    backend = _bpe(special, vocab_size)
    bos = backend.token_to_id("<|begin_of_text|>")
    backend.post_processor = TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B", special_tokens=[("<|begin_of_text|>", bos)]
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # unannotated __init__
        tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", model_max_length=n_positions
    )
    tokenizer.chat_template = LLAMA_CHAT_TEMPLATE
    eos = [cast(int, tokenizer.convert_tokens_to_ids(t)) for t in ("<|end_of_text|>", "<|eot_id|>")]  # one id each
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=n_embd,
        intermediate_size=2 * n_embd,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=max(1, n_head // 2),
        max_position_embeddings=n_positions,
        bos_token_id=bos,
        eos_token_id=eos,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]  # unannotated __init__
        bos_token_id=bos, eos_token_id=eos
    )
    return _save(out_dir, model, tokenizer)


def build_tiny_qwen2(
    out_dir: str | Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_positions: int = 256,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Qwen2-instruct style: no BOS, ChatML template, tokenizer EOS = <|im_end|>, pad = <|endoftext|>,
    config EOS <|endoftext|> and EOS ids [<|im_end|>, <|endoftext|>] in generation_config.json."""
    import torch
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # unannotated __init__
        tokenizer_object=_bpe(special, vocab_size),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=n_positions,
    )
    tokenizer.chat_template = QWEN2_CHAT_TEMPLATE
    im_end, text_end = (cast(int, tokenizer.convert_tokens_to_ids(t)) for t in ("<|im_end|>", "<|endoftext|>"))
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=n_embd,
        intermediate_size=2 * n_embd,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=max(1, n_head // 2),
        max_position_embeddings=n_positions,
        eos_token_id=text_end,
        pad_token_id=text_end,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]  # unannotated __init__
        eos_token_id=[im_end, text_end], pad_token_id=text_end
    )
    return _save(out_dir, model, tokenizer)


def build_tiny_bert(
    out_dir: str | Path,
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 2,
    n_positions: int = 256,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """A BERT-style encoder (WordPiece, [CLS] ... [SEP], pad [PAD]) for the reward model: what
    `AutoModelForSequenceClassification` puts a fresh head on, like a DeBERTa or MiniLM backbone."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import BertProcessing
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(
        _CORPUS.splitlines(),
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    )
    backend = wp._tokenizer
    backend.post_processor = BertProcessing(
        ("[SEP]", backend.token_to_id("[SEP]")), ("[CLS]", backend.token_to_id("[CLS]"))
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # unannotated __init__
        tokenizer_object=backend,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=n_positions,
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=n_embd,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        intermediate_size=2 * n_embd,
        max_position_embeddings=n_positions,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return _save(out_dir, BertModel(config), tokenizer)


BUILDERS: dict[str, Callable[..., Path]] = {
    "gpt2": build_tiny_gpt2,
    "llama": build_tiny_llama,
    "qwen2": build_tiny_qwen2,
    "bert": build_tiny_bert,
}


def build_tiny(family: str, out_dir: str | Path, **kwargs: Any) -> Path:
    """A tiny model of `family` (one of FAMILIES) in `out_dir`."""
    if family not in BUILDERS:
        raise ValueError(f"unknown tiny-model family {family!r}: choose one of {', '.join(FAMILIES)}")
    return BUILDERS[family](out_dir, **kwargs)
