"""cli/localstack.py without starting services: Label Studio's secrets travel in its environment,
never its arguments (the running process is checked in tests/e2e/test_up.py), and installing it
shows a line before and after, not pip's output (which goes to a log)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.localstack import ServiceError, install_label_studio, label_studio_argv, label_studio_env

NOTICES = "".join(f"echo 'WARNING: the package index of this machine says notice {i}'\n" for i in range(300))


def test_label_studio_gets_login_and_token_in_its_environment_not_its_arguments(tmp_path):
    argv = label_studio_argv(Path("/x/label-studio"), 8080)
    env = label_studio_env(tmp_path, {}, username="admin@example.com", password="pw-123456", token="t" * 40)
    assert not [a for a in argv if "pw-123456" in a or "t" * 40 in a or a in ("--password", "--user-token")]
    assert (env["LABEL_STUDIO_USERNAME"], env["LABEL_STUDIO_PASSWORD"], env["LABEL_STUDIO_USER_TOKEN"]) == (
        "admin@example.com",
        "pw-123456",
        "t" * 40,
    )


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "install.sh"
    path.write_text("set -e\n" + body)
    return path


def test_installing_label_studio_keeps_pips_output_in_a_log(tmp_path):
    venv, log, said = tmp_path / "venv", tmp_path / "logs" / "install.log", []
    body = NOTICES + 'mkdir -p "$1/bin" && touch "$1/bin/label-studio"\n'
    exe = install_label_studio(venv, log=log, script=script(tmp_path, body), say=said.append)
    assert exe == venv / "bin" / "label-studio" and exe.exists()
    assert len(said) == 2 and str(log) in said[0] and "installed" in said[1], said
    assert log.read_text().count("WARNING") == 300


def test_a_failed_install_shows_the_error_lines_not_the_notices(tmp_path):
    body = NOTICES + "echo 'ERROR: No matching distribution found for label-studio==1.23.2'\nexit 1\n"
    with pytest.raises(ServiceError) as err:
        install_label_studio(
            tmp_path / "venv", log=tmp_path / "install.log", script=script(tmp_path, body), say=lambda _: None
        )
    message = str(err.value)
    assert "ERROR: No matching distribution found" in message and "WARNING" not in message, message
    assert str(tmp_path / "install.log") in message and len(message.splitlines()) < 10
