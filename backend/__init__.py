"""The web tier: Label Studio's ML-backend protocol in Flask. It validates, answers fast, scores
with the serving reward model and enqueues jobs by name; it never imports `worker`, `cli` or
training code. `backend.app.create_app` builds the app; `backend.context` is what handlers share."""
