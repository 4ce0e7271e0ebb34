"""`prefloop up`'s choices that need no services: the model it runs on, and the state it keeps."""

from __future__ import annotations

import argparse
import stat

from cli.commands.up import State, choose_model


def args(tiny: bool = False) -> argparse.Namespace:
    return argparse.Namespace(tiny=tiny)


def test_offline_it_builds_the_tiny_model_and_says_so(tmp_path, monkeypatch, capsys):
    """Without the model hub (HF_HUB_OFFLINE here), gpt2 cannot be had: a tiny GPT-2 is built locally."""
    monkeypatch.delenv("BASE_MODEL", raising=False)
    chosen = choose_model(args(), State(), tmp_path)
    out = capsys.readouterr().out
    assert chosen == str(tmp_path / "tiny-gpt2") and (tmp_path / "tiny-gpt2" / "config.json").exists()
    assert "OFFLINE: cannot use gpt2" in out and "gibberish" in out


def test_a_local_base_model_is_used_and_kept_on_the_next_start(tmp_path, monkeypatch, tiny_model_dir, capsys):
    """BASE_MODEL as a directory is used as is; the next start keeps the first start's choice."""
    monkeypatch.setenv("BASE_MODEL", str(tiny_model_dir))
    state = State()
    state.base_model = choose_model(args(), state, tmp_path)
    assert state.base_model == str(tiny_model_dir)
    monkeypatch.delenv("BASE_MODEL")
    assert choose_model(args(), state, tmp_path) == str(tiny_model_dir)
    assert "chosen at the first start" in capsys.readouterr().out


def test_tiny_flag_wins(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("BASE_MODEL", str(tiny_model_dir))
    assert choose_model(args(tiny=True), State(base_model=str(tiny_model_dir)), tmp_path) == str(tmp_path / "tiny-gpt2")


def test_state_keeps_login_and_token_private_and_stable(tmp_path):
    """The generated password and token are saved readable only by the owner and reused."""
    path = tmp_path / "up.json"
    first = State.load(path)
    first.project_id = 7
    first.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = State.load(path)
    assert (again.password, again.token, again.project_id) == (first.password, first.token, 7)
    assert len(again.token) == 40 and len(again.password) >= 12
