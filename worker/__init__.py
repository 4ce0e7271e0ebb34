"""The job tier: an RQ worker that generates answer pairs, trains reward models and runs PPO."""
