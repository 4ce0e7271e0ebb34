"""DPO: the policy trained straight on the project's preference pairs with TRL's DPOTrainer.

config.py    every knob (DPOKnobs), saved as dpo_config.json
train.py     `train_dpo(pairs, policy_source, out_dir, config) -> metrics`: one run into a directory
job.py       the queue job: Label Studio's pairs (exactly as reward training reads them), the
             annotation threshold, the on-policy filter, atomic publish
__main__.py  `python -m worker.dpo` / `accelerate launch -m worker.dpo` outside the queue
"""
