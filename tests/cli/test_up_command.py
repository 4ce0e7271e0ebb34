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


def test_the_tiny_model_note_is_on_every_task_and_leaves_with_the_tiny_model(label_studio, ls_settings):
    """On the tiny model the note sits at the top of the labeling interface (every task shows it,
    however it is opened) and in the instructions; announcing twice adds one note; a start on a real
    model gives back the label config exactly as it was and clears prefloop's note, not the user's."""
    from cli.tinynote import BANNER_CLASS, TINY_NOTE, announce
    from prefloop.label_config import load_label_config, parse_label_config
    from prefloop.labelstudio import LabelStudioClient

    client = LabelStudioClient(ls_settings)
    shipped = load_label_config("pairwise")
    pid = label_studio.create_project(shipped, title="tiny note")
    announce(client, pid, tiny=True)
    announce(client, pid, tiny=True)
    project = label_studio.api("GET", f"/api/projects/{pid}")
    assert project["label_config"].count(BANNER_CLASS) == 1 and TINY_NOTE[:40] in project["label_config"]
    assert parse_label_config(project["label_config"]) == parse_label_config(shipped)
    assert TINY_NOTE in project["expert_instruction"] and project["show_instruction"]

    announce(client, pid, tiny=False)
    project = label_studio.api("GET", f"/api/projects/{pid}")
    assert project["label_config"].strip() == shipped.strip() and not project["expert_instruction"]
    assert not project["description"] and not project["show_instruction"]

    client.update_project(pid, expert_instruction="<p>Our own guidelines</p>", show_instruction=True)
    announce(client, pid, tiny=False)
    assert label_studio.api("GET", f"/api/projects/{pid}")["expert_instruction"] == "<p>Our own guidelines</p>"
