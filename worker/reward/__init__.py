"""Reward-model training, shaped like `worker.ppo`: `config` (the knobs), `train` (TRL's
RewardTrainer on preference pairs), `report` (evaluation, metrics, plots), `job` (Label Studio's
annotations in, a published version out) and `__main__` (`accelerate launch -m worker.reward`)."""

from worker.reward.config import RewardTrainConfig
from worker.reward.train import split_by_prompt, train_reward

__all__ = ["RewardTrainConfig", "split_by_prompt", "train_reward"]
