"""The web tier: Label Studio's ML-backend protocol in Flask. It validates, answers fast, scores
with the serving reward model and enqueues jobs by name; it never imports `worker` or training code."""

from backend.app import create_app

__all__ = ["create_app"]
