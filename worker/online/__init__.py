"""GRPO and RLOO: TRL's online trainers with the project's reward model as the reward function.

config.py    every knob (GRPOKnobs, RLOOKnobs: one shared base, the differences on top), saved as
             grpo_config.json / rloo_config.json
train.py     `train_online(trainer, prompts, policy_source, reward_source, out_dir, config) -> metrics`
job.py       the queue job: a good enough reward model, the project's prompts, atomic publish
__main__.py  `python -m worker.online --trainer grpo|rloo` / `accelerate launch -m worker.online`
"""
