"""Settings are read from the environment at start; bad values name the variable."""

from pathlib import Path

import pytest

from prefloop.errors import SettingsError
from prefloop.settings import Settings, documented_settings


def test_defaults_follow_label_studio_conventions():
    """A fresh environment gives Label Studio's conventional defaults."""
    s = Settings.from_env({})
    assert s.port == 9090
    assert s.base_model == "gpt2"
    assert s.model_dir == Path("./models")
    assert not s.auth_enabled


def test_values_are_parsed_and_typed():
    """Environment strings become typed values."""
    s = Settings.from_env(
        {
            "PORT": "9191",
            "WORKERS": "3",
            "TEMPERATURE": "0.7",
            "PROJECTS": "3, 5",
            "REGENERATE_AFTER_PPO": "yes",
            "LOG_LEVEL": "debug",
            "MODEL_DIR": "/data/models",
        }
    )
    assert (s.port, s.workers, s.temperature, s.projects) == (9191, 3, 0.7, (3, 5))
    assert s.regenerate_after_ppo is True and s.log_level == "DEBUG" and s.model_dir == Path("/data/models")


@pytest.mark.parametrize(
    "env, name",
    [
        ({"PORT": "ninety"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"WORKERS": "0"}, "WORKERS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"LABEL_STUDIO_URL": "not a url"}, "LABEL_STUDIO_URL"),
        ({"BASIC_AUTH_USER": "admin"}, "BASIC_AUTH_PASS"),
        ({"TOP_P": "1.5"}, "TOP_P"),
        ({"REGENERATE_AFTER_PPO": "maybe"}, "REGENERATE_AFTER_PPO"),
        ({"PROJECTS": "1,two"}, "PROJECTS"),
        ({"DEVICE": "tpu"}, "DEVICE"),
    ],
)
def test_bad_value_names_the_variable(env, name):
    """A typo stops the process at start with the variable's name in the message."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


def test_secrets_are_redacted():
    """Logged settings never show the API key or the password."""
    s = Settings.from_env({"LABEL_STUDIO_API_KEY": "abc123", "BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": "p4ss"})
    red = s.redacted()
    assert red["LABEL_STUDIO_API_KEY"] == "***" and red["BASIC_AUTH_PASS"] == "***" and red["BASIC_AUTH_USER"] == "u"


def test_every_documented_default_reads_back_as_the_default():
    """The defaults .env.example and the README show, given back as environment strings, give the
    same settings as an empty environment: the documentation cannot drift from the parser."""
    documented = {name: "" if default is None else str(default) for name, default, _help in documented_settings()}
    assert Settings.from_env(documented) == Settings.from_env({})


def test_bad_setting_stops_the_cli(capsys, monkeypatch):
    """`prefloop serve` with a bad PORT exits 2 naming PORT, before starting anything."""
    from cli.main import main

    monkeypatch.setenv("PORT", "abc")
    assert main(["serve"]) == 2
    assert "PORT" in capsys.readouterr().err
