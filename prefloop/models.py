"""Loading models: the only module that calls `from_pretrained`.

Production loads `gpt2` (or BASE_MODEL, or a published version directory); tests load a tiny GPT-2
that `prefloop tiny-model DIR` builds, through exactly these functions. torch and transformers are
imported inside the functions, so importing this module stays cheap (the backend imports it).
GPT-2 has no pad token: every loader sets pad = eos and `config.pad_token_id`, the one convention
used for generation, reward training and scoring.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

from prefloop.errors import ModelNotFound

logger = logging.getLogger(__name__)


def resolve_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def use_bf16(device: Any, requested: bool | None = None) -> bool:
    """The one precision rule: bf16 on a GPU that supports it (unless `requested` says otherwise),
    never on CPU. Generation, scoring, reward training and PPO all ask here."""
    import torch

    if requested is not None:
        return bool(requested) and device.type == "cuda"
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def default_dtype(device: Any) -> Any:
    """bf16 on a GPU that supports it, fp32 elsewhere."""
    import torch

    return torch.bfloat16 if use_bf16(device) else torch.float32


def context_length(model_config: Any, tokenizer: Any = None, default: int = 1024) -> int:
    """Longest sequence (prompt + response, in tokens) the model takes: GPT-2's `n_positions`,
    Llama/Qwen/BERT's `max_position_embeddings`, or the tokenizer's own limit when it is smaller."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(model_config, name, None)
        if isinstance(value, int) and value > 0:
            break
    else:
        value = default
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < value:
        value = limit
    return int(value)


def _loading(source: str | Path, loader: Callable[[], Any]) -> Any:
    try:
        return loader()
    except (OSError, ValueError) as exc:
        hint = ""
        if not Path(str(source)).exists():
            hint = (" It is not a local directory and could not be fetched from the model hub (offline?):"
                    " run `prefloop download-model` where the hub is reachable, or set BASE_MODEL to a"
                    " local directory, e.g. one built by `prefloop tiny-model DIR`.")
        raise ModelNotFound(f"cannot load model {str(source)!r}: {exc}.{hint}") from None


def load_tokenizer(source: str | Path, *, padding_side: str = "right"):
    from transformers import AutoTokenizer

    tok = _loading(source, lambda: AutoTokenizer.from_pretrained(str(source)))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def load_causal_lm(source: str | Path, *, device=None, dtype=None):
    from transformers import AutoModelForCausalLM

    device = device or resolve_device()
    dtype = dtype or default_dtype(device)
    model = _loading(source, lambda: AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = model.config.eos_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = model.config.eos_token_id
    return model.to(device).eval()


def load_reward_model(source: str | Path, *, device=None, dtype=None, pad_token_id: int | None = None):
    """A one-label sequence-classification model: a fresh head on a base LM, or a published reward model."""
    from transformers import AutoModelForSequenceClassification

    device = device or resolve_device()
    dtype = dtype or default_dtype(device)
    model = _loading(source, lambda: AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=1, dtype=dtype))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_token_id if pad_token_id is not None else model.config.eos_token_id
    return model.to(device).eval()


def read_base_model_name(path: str | Path) -> str | None:
    """The `_name_or_path`/`prefloop_base_model` a saved model records, to detect mismatched bases."""
    import json

    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return config.get("prefloop_base_model") or config.get("_name_or_path")


def fused_gelu(model):
    """Swap GPT-2's `gelu_new` (tanh GELU written as five elementwise ops) for PyTorch's fused
    `GELU(approximate="tanh")`: the same function in one kernel (outputs agree to ~1e-6), about 15%
    faster inference on CPU. The saved config still says gelu_new; weights are untouched."""
    from torch import nn
    from transformers.activations import NewGELUActivation

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, NewGELUActivation):
                setattr(parent, name, nn.GELU(approximate="tanh"))
    return model


class ModelCache:
    """Keeps one loaded object per key (e.g. the serving reward model of a project) and reloads it
    when the key's source path changes (a new version was published). Thread-safe: gunicorn threads
    share one cache per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Any, tuple[str, Any]] = {}

    def get(self, key: Any, source: str | Path, load: Callable[[str | Path], Any]) -> Any:
        source = str(source)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == source:
                return entry[1]
            logger.info("loading %s for %s", source, key)
            value = load(source)
            self._entries[key] = (source, value)
            return value
