"""PPO fine-tuning of the policy against a published reward model (trlx's design on accelerate).

config.py   every knob (PPOConfig), saved as ppo_config.json
core.py     the mathematics: KL-penalised rewards, GAE, whitening, KL controllers, clipped losses
model.py    the policy with a value head
rollout.py  pure-sampling rollouts, pad==eos-safe response masks, log-probs and scores
trainer.py  the loop on accelerate (bf16 on GPU, fp32 on CPU), KL guardrail
report.py   metrics.json, samples.json, curve.png
run.py      one run into a directory; job.py the queue job that publishes it
"""
