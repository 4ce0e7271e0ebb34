"""What every policy trainer shares: the job contract, the KL guardrail and the report.

prefloop trains the policy four ways (POLICY_TRAINER, or `prefloop train-policy --trainer`):

    ppo    worker/ppo/     prefloop's own PPO against the reward model (value head, adaptive KL)
    dpo    worker/dpo/     TRL's DPOTrainer straight on the preference pairs, no reward model
    grpo   worker/online/  TRL's GRPOTrainer, the reward model as the reward function
    rloo   worker/online/  TRL's RLOOTrainer, the reward model as the reward function

Each one has a frozen knob dataclass (`config_class(name)`, saved with the version as
<name>_config.json) and a job that goes through `contract` (skip with a reason, train into a
staging directory, publish atomically) and writes the report of `report` (metrics.json with the
same summary keys for every trainer plus namespaced ones, samples.json, curve.png). `guard`
measures the KL to the starting policy, for TRL's trainers during training, and stops a run that
passes its bound, keeping the weights from the last check within it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prefloop.errors import InputError
from prefloop.settings import POLICY_TRAINERS

if TYPE_CHECKING:
    from prefloop.knobs import Knobs

CONFIGS = {
    "ppo": "worker.ppo.config:PPOConfig",
    "dpo": "worker.dpo.config:DPOKnobs",
    "grpo": "worker.online.config:GRPOKnobs",
    "rloo": "worker.online.config:RLOOKnobs",
}
JOBS = {
    "ppo": "worker.ppo.job:ppo_job",
    "dpo": "worker.dpo.job:dpo_job",
    "grpo": "worker.online.job:online_job",
    "rloo": "worker.online.job:online_job",
}


def check_trainer(name: str) -> str:
    if name not in POLICY_TRAINERS:
        raise InputError(f"unknown policy trainer {name!r}: choose one of {', '.join(POLICY_TRAINERS)}")
    return name


def _load(dotted: str) -> Any:
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


def config_class(name: str) -> type[Knobs]:
    """The knob dataclass of a trainer (a prefloop.knobs.Knobs subclass)."""
    cls: type[Knobs] = _load(CONFIGS[check_trainer(name)])
    return cls


def job_function(name: str) -> Callable[..., dict[str, Any]]:
    job: Callable[..., dict[str, Any]] = _load(JOBS[check_trainer(name)])
    return job
