"""`prefloop download-model`: put BASE_MODEL (and REWARD_BASE_MODEL, when it names another model)
into the local model cache, once, as an explicit step.

This is the only code in prefloop that reaches the model hub. It fills the Hugging Face cache
(`HF_HOME`, a volume shared with the backend and the workers), so those run with
`HF_HUB_OFFLINE=1` and load the models by their hub names from the cache. A model already in the
cache is found without the network, so a second run (every `docker compose up`) exits at once,
offline too. A local directory as BASE_MODEL needs no download.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from prefloop.errors import ModelNotFound
from prefloop.settings import Settings

logger = logging.getLogger(__name__)

# What loading a causal LM and its tokenizer needs; GPT-2's repository also holds TensorFlow, Flax,
# ONNX and Rust weights (several GB) that prefloop never reads.
PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "tokenizer*", "vocab*", "merges*"]
FALLBACK_WEIGHTS = ["pytorch_model*.bin"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "download-model",
        help="download BASE_MODEL and REWARD_BASE_MODEL into the model cache (HF_HOME) so services run offline",
    )
    p.add_argument("--model", help="hub name to download instead of BASE_MODEL and REWARD_BASE_MODEL")
    p.add_argument("--revision", help="branch, tag or commit (default: the repository's main branch)")
    p.add_argument("--update", action="store_true", help="ask the hub for a newer revision even when the cache has one")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    from prefloop.logs import setup_logging

    setup_logging(settings.log_level)
    if args.model:
        wanted = [("--model", args.model)]
    else:  # the policy's base and, when it is another model, the reward model's backbone
        wanted = [("BASE_MODEL", settings.base_model)]
        if settings.reward_base_model and settings.reward_base_model != settings.base_model:
            wanted.append(("REWARD_BASE_MODEL", settings.reward_base_model))
    for setting, name in wanted:
        fetch(setting, name, revision=args.revision, update=args.update)
    return 0


def fetch(setting: str, name: str, *, revision: str | None, update: bool) -> None:
    """Download one model the settings name (or say why it needs none, or cannot be had)."""
    if Path(name).is_dir():
        print(f"{setting}={name} is a local directory: nothing to download")
        return
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:  # a path, not a hub name (owner/name)
        raise ModelNotFound(
            f"{setting}={name} is not a directory (and not a model hub name): point it at a model "
            f"directory, or build the tiny offline model there with `prefloop tiny-model {name}` "
            f"(with compose: `docker compose run --rm model-download prefloop tiny-model {name}`)"
        )
    path, fetched = download(name, revision=revision, update=update, setting=setting)
    verify(name)
    state = "downloaded to" if fetched else "already in the cache at"
    print(f"{setting}={name} {state} {path}; the backend and workers load it offline (HF_HUB_OFFLINE=1)")


def download(
    name: str, *, revision: str | None = None, update: bool = False, setting: str = "BASE_MODEL"
) -> tuple[Path, bool]:
    """The snapshot directory of `name` (the value of `setting`) in the cache, and whether it was fetched now."""
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
            f"model hub is reachable, or set {setting} to a local directory"
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
        raise ModelNotFound(f"{name!r} has no safetensors or PyTorch weights; prefloop loads only those")
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
