"""`prefloop download-model`: put BASE_MODEL into the local model cache, once, as an explicit step.

This is the only code in prefloop that reaches the model hub. It fills the Hugging Face cache
(`HF_HOME`, a volume shared with the backend and the workers), so those run with
`HF_HUB_OFFLINE=1` and load `BASE_MODEL` by its hub name from the cache. A model already in the
cache is found without the network, so a second run (every `docker compose up`) exits at once,
offline too. A local directory as BASE_MODEL needs no download.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefloop.errors import ModelNotFound
from prefloop.settings import Settings

logger = logging.getLogger(__name__)

# What loading a causal LM and its tokenizer needs; GPT-2's repository also holds TensorFlow, Flax,
# ONNX and Rust weights (several GB) that prefloop never reads.
PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "tokenizer*", "vocab*", "merges*"]
FALLBACK_WEIGHTS = ["pytorch_model*.bin"]


def register(sub) -> None:
    p = sub.add_parser(
        "download-model", help="download BASE_MODEL into the model cache (HF_HOME) so services run offline"
    )
    p.add_argument("--model", help="hub name to download instead of BASE_MODEL")
    p.add_argument("--revision", help="branch, tag or commit (default: the repository's main branch)")
    p.add_argument("--update", action="store_true", help="ask the hub for a newer revision even when the cache has one")
    p.set_defaults(func=run)


def run(args) -> int:
    settings = Settings.from_env()
    from prefloop.logs import setup_logging

    setup_logging(settings.log_level)
    name = args.model or settings.base_model
    if Path(name).is_dir():
        print(f"BASE_MODEL={name} is a local directory: nothing to download")
        return 0
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:  # a path, not a hub name (owner/name)
        raise ModelNotFound(
            f"BASE_MODEL={name} is not a directory (and not a model hub name): point it at a model "
            f"directory, or build the tiny offline model there with `prefloop tiny-model {name}` "
            f"(with compose: `docker compose run --rm model-download prefloop tiny-model {name}`)"
        )
    path, fetched = download(name, revision=args.revision, update=args.update)
    verify(name)
    state = "downloaded to" if fetched else "already in the cache at"
    print(f"{name} {state} {path}; the backend and workers load it offline (HF_HUB_OFFLINE=1)")
    return 0


def download(name: str, *, revision: str | None = None, update: bool = False) -> tuple[Path, bool]:
    """The snapshot directory of `name` in the cache, and whether it was fetched now."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if not update:
        cached = _cached(name, revision)
        if cached is not None:
            return cached, False
    if constants.HF_HUB_OFFLINE:
        raise ModelNotFound(
            f"{name!r} is not in the model cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE=1 "
            "forbids downloading it: run `prefloop download-model` with HF_HUB_OFFLINE=0 where the "
            "model hub is reachable, or set BASE_MODEL to a local directory"
        )
    logger.info("downloading %s (revision %s) into %s", name, revision or "main", constants.HF_HUB_CACHE)
    try:
        path = Path(snapshot_download(name, revision=revision, allow_patterns=PATTERNS))
        if not _weights(path):
            path = Path(snapshot_download(name, revision=revision, allow_patterns=PATTERNS + FALLBACK_WEIGHTS))
    except HFValidationError as exc:
        raise ModelNotFound(f"{name!r} is neither a directory nor a valid model hub name: {exc}") from None
    except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, OSError) as exc:
        raise ModelNotFound(
            f"cannot download {name!r} from the model hub: {type(exc).__name__}: {exc}. Check the "
            "name, the network, and HF_TOKEN for gated models"
        ) from None
    if not _weights(path):
        raise ModelNotFound(f"{name!r} has no safetensors or PyTorch weights; prefloop needs a causal LM like gpt2")
    return path, True


def _cached(name: str, revision: str | None) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(name, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return path if (path / "config.json").is_file() and _weights(path) else None


def _weights(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))


def verify(name: str) -> None:
    """Load the tokenizer from the cache the way the services will (through prefloop.models)."""
    from prefloop.models import load_tokenizer

    load_tokenizer(name)
