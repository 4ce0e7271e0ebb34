"""`prefloop download-model` (compose's one-shot model-download service): a model in the cache is
found offline and loads by its hub name; an empty cache offline fails and says how to fix it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.services import PREFLOOP, REPO, prefloop_env

HUB_NAME = "prefloop-test/tiny-gpt2"


def hf_cache_with(model_dir: Path, hf_home: Path, name: str = HUB_NAME) -> None:
    """Lay out the Hugging Face cache as a download of `name` leaves it (refs/main -> snapshot)."""
    repo = hf_home / "hub" / ("models--" + name.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(model_dir, repo / "snapshots" / commit)


def download(hf_home: Path, base_model: str, tmp_path: Path, **more: str) -> subprocess.CompletedProcess:
    env = prefloop_env(base_model=base_model, hf_home=hf_home, model_dir=tmp_path / "models", **more)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")  # as the running services have it
    return subprocess.run(PREFLOOP + ["download-model"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_cached_model_is_found_and_loads_offline(tiny_model_dir, tmp_path):
    """With the model in the shared cache, a second `up` finds it without the hub and loads its tokenizer by name."""
    hf_cache_with(tiny_model_dir, tmp_path / "hf")
    r = download(tmp_path / "hf", HUB_NAME, tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"BASE_MODEL={HUB_NAME} already in the cache" in r.stdout


def test_a_separate_reward_backbone_is_fetched_too_and_named_when_missing(tiny_model_dir, tmp_path):
    """REWARD_BASE_MODEL naming another model: the command puts it in the cache as well (the reward
    model then loads offline); when it cannot, it fails naming REWARD_BASE_MODEL, not BASE_MODEL."""
    reward = "prefloop-test/tiny-reward"
    hf_cache_with(tiny_model_dir, tmp_path / "hf")
    missing = download(tmp_path / "hf", HUB_NAME, tmp_path, reward_base_model=reward)
    assert missing.returncode == 1 and f"BASE_MODEL={HUB_NAME} already in the cache" in missing.stdout
    assert f"{reward!r} is not in the model cache" in missing.stderr, missing.stderr
    assert "set REWARD_BASE_MODEL to a local directory" in missing.stderr, missing.stderr
    hf_cache_with(tiny_model_dir, tmp_path / "hf", name=reward)
    r = download(tmp_path / "hf", HUB_NAME, tmp_path, reward_base_model=reward)
    assert r.returncode == 0, r.stderr
    assert f"REWARD_BASE_MODEL={reward} already in the cache" in r.stdout, r.stdout


def test_an_empty_cache_offline_fails_with_the_fix(tmp_path):
    """Offline with nothing cached, the command exits 1 naming HF_HUB_OFFLINE and the way out."""
    r = download(tmp_path / "hf", HUB_NAME, tmp_path)
    assert r.returncode == 1
    assert "HF_HUB_OFFLINE=1" in r.stderr and "prefloop download-model" in r.stderr


def test_a_local_directory_needs_no_download(tiny_model_dir, tmp_path):
    """BASE_MODEL pointing at a local directory: nothing to download."""
    r = download(tmp_path / "hf", str(tiny_model_dir), tmp_path)
    assert r.returncode == 0 and "nothing to download" in r.stdout


def test_a_missing_directory_fails_with_the_fix(tmp_path):
    """BASE_MODEL naming a directory that does not exist: a clear error naming `prefloop tiny-model`,
    not huggingface_hub's HFValidationError."""
    missing = tmp_path / "no-such-model"
    for offline in ("1", "0"):
        env = prefloop_env(base_model=str(missing), hf_home=tmp_path / "hf", model_dir=tmp_path / "models")
        env.update(HF_HUB_OFFLINE=offline, TRANSFORMERS_OFFLINE=offline)
        r = subprocess.run(
            PREFLOOP + ["download-model"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 1, r.stderr
        assert "HFValidationError" not in r.stderr and "Traceback" not in r.stderr
        assert f"BASE_MODEL={missing} is not a directory" in r.stderr and "prefloop tiny-model" in r.stderr
