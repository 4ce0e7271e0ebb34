"""Optional HTTP basic auth (BASIC_AUTH_USER/BASIC_AUTH_PASS) on the routes Label Studio calls with
credentials. Event webhooks arrive without credentials (Label Studio sends none), so /webhook is
open, and it can only trigger coalesced, rate-limited jobs for served projects: no data is taken
from its body. /health stays open for load balancers and container healthchecks."""

from __future__ import annotations

import hmac

from flask import Flask, request

from prefloop.errors import Unauthorized

OPEN_ENDPOINTS = {"routes.health", "routes.webhook", "static"}


def init_app(app: Flask) -> None:
    @app.before_request
    def check_basic_auth():
        from backend.context import context

        settings = context().settings
        if not settings.auth_enabled:
            return None
        creds = request.authorization
        if request.endpoint in OPEN_ENDPOINTS and creds is None:
            return None
        if creds is None or creds.type != "basic":
            raise Unauthorized("this backend requires HTTP basic auth: set the same user and password on the "
                               "model connection in Label Studio (Settings > Model)")
        ok_user = hmac.compare_digest((creds.username or "").encode(), settings.basic_auth_user.encode())
        ok_pass = hmac.compare_digest((creds.password or "").encode(), settings.basic_auth_pass.encode())
        if not (ok_user and ok_pass):
            raise Unauthorized("wrong basic auth user or password")
        return None

    @app.after_request
    def challenge(response):
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="prefloop"'
        return response
