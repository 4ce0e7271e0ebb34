"""The app factory. Nothing is built at import: settings, the Redis connection and models are created
here or lazily on first use, so gunicorn can import the module cheaply and fork safely."""

from __future__ import annotations

import logging
from typing import Any, cast

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from backend import auth, metrics, reward_api, routes, status
from backend.context import MAX_BODY, Context
from prefloop.artifacts import ArtifactStore
from prefloop.errors import PrefloopError
from prefloop.queue import JobQueue
from prefloop.redact import redact
from prefloop.settings import Settings

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, queue: JobQueue | None = None, test_config: dict[str, Any] | None = None
) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, JSON_SORT_KEYS=False)
    if test_config:
        app.config.update(test_config)
    store = ArtifactStore(settings.model_dir, keep_versions=settings.keep_versions)
    app.extensions["prefloop"] = Context(settings, queue or JobQueue(settings), store)

    auth.init_app(app)
    routes.init_app(app)
    reward_api.init_app(app)
    status.init_app(app)
    metrics.init_app(app)
    _init_errors(app)
    return app


def _init_errors(app: Flask) -> None:
    @app.errorhandler(PrefloopError)
    def prefloop_error(exc: PrefloopError) -> tuple[Response, int]:
        message = redact(str(exc))  # a password inside a URL never reaches a response
        if exc.http_status >= 500:
            logger.warning("%s: %s", type(exc).__name__, message)
        return jsonify(error=type(exc).__name__, message=message), exc.http_status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        message = exc.description
        if exc.code == 413:
            message = f"request body is larger than {app.config['MAX_CONTENT_LENGTH'] // (1024 * 1024)} MiB"
        # Flask calls HTTPException handlers only for exceptions with a code (Flask.handle_http_exception
        # returns code-less proxy exceptions unhandled), so `code` is an int here.
        return jsonify(error=exc.name, message=message), cast(int, exc.code)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:  # process boundary: log with traceback, answer without one
        logger.exception("unhandled error")
        return jsonify(error="InternalError", message=f"{type(exc).__name__}: see the backend log"), 500


def serve_app(settings: Settings | None = None) -> Flask:
    """The gunicorn entry point (`backend.app:serve_app()`): read settings, set up logging, build the app."""
    from prefloop.logs import setup_logging

    settings = settings or Settings.from_env()
    setup_logging(settings.log_level)
    return create_app(settings)
