"""One `--set KEY=VALUE` parser and one conversion rule for every trainer config."""

from __future__ import annotations

import dataclasses

import pytest

from prefloop.errors import InputError
from prefloop.knobs import parse_set
from worker.ppo.config import PPOConfig
from worker.reward.config import RewardTrainConfig


def test_set_items_without_equals_or_name_are_refused_by_name():
    assert parse_set(["a=1", " b = x=y"]) == {"a": "1", "b": " x=y"}
    for bad in ("steps", "=5"):
        with pytest.raises(InputError, match="KEY=VALUE"):
            parse_set([bad])


@pytest.mark.parametrize("config", [PPOConfig, RewardTrainConfig])
def test_every_trainer_config_converts_the_same_way(config):
    """Booleans, integers, floats and None mean the same in every config; results are frozen and typed."""
    overrides = config.overrides_from_set(["seed=3", "learning_rate=2e-5"])
    assert overrides == {"seed": 3, "learning_rate": 2e-5}
    built = config.from_overrides(overrides)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.seed = 4  # frozen: a saved config is what ran
    assert config.from_overrides(built.to_dict()) == built  # the saved *_config.json reads back
    with pytest.raises(InputError, match="no knob 'sede'"):
        config.overrides_from_set(["sede=3"])
    with pytest.raises(InputError, match="seed='three'"):
        config.overrides_from_set(["seed=three"])
    assert {name for name, _default, help in config.describe() if not help} == set()


def test_optional_knobs_take_none_and_booleans_take_words():
    cfg = PPOConfig.from_overrides({"target_kl": "none", "whiten_advantages": "off", "missing_eos_penalty": "1.5"})
    assert cfg.target_kl is None and cfg.whiten_advantages is False and cfg.missing_eos_penalty == 1.5
    reward = RewardTrainConfig.from_overrides({"bf16": "null", "gradient_checkpointing": "yes"})
    assert reward.gradient_checkpointing is True
    with pytest.raises(InputError, match="steps cannot be None"):
        PPOConfig.from_overrides({"steps": "none"})
    with pytest.raises(InputError, match="tracking"):
        RewardTrainConfig.from_overrides({"tracking": "mlflow"})
