"""prefloop: the shared core of the Label Studio RLHF backend.

Both tiers (`backend/`, the Flask web tier, and `worker/`, the RQ job tier) import this package;
it imports neither of them. Nothing heavy happens at import: no model, no Redis connection, no
CUDA, no logging setup.
"""

__version__ = "0.1.0"
