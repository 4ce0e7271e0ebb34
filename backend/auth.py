"""Who may call what.

- Optional HTTP basic auth (BASIC_AUTH_USER/BASIC_AUTH_PASS) on every route Label Studio calls with
  credentials: health checks aside, everything but /webhook.
- /webhook: Label Studio sends its event webhooks without the ML backend's basic auth, but with the
  custom headers set on the webhook object (`/api/webhooks/<id>`, field `headers`). With
  WEBHOOK_SECRET set, /webhook requires the header X-Prefloop-Webhook-Secret with that value
  (`prefloop init` and `prefloop up` put it on the webhook); valid basic auth also passes. A wrong
  secret is refused (403) before the body is read; compared in constant time. One exception: the
  Train button's START_TRAINING comes from Label Studio's ML client, which sends basic auth (when
  configured) but not the webhook's headers, so START_TRAINING passes without the secret; it never
  forces a run (it trains only when an annotation changed, and annotation events need the secret).
  Any other event without it is a 401. Without WEBHOOK_SECRET, /webhook is open and can only queue
  coalesced, rate-limited jobs for served projects; no data is taken from its body.
- /health stays open for load balancers and container healthchecks.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, request

from prefloop.errors import Forbidden, Unauthorized
from prefloop.labelstudio import WEBHOOK_SECRET_HEADER
from prefloop.settings import Settings

OPEN_ENDPOINTS = {"routes.health", "routes.webhook", "static"}


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def basic_auth_ok(settings: Settings) -> bool:
    """Whether the request carries the configured basic-auth user and password."""
    creds = request.authorization
    if creds is None or creds.type != "basic":
        return False
    ok_user = _same(creds.username or "", settings.basic_auth_user)
    ok_pass = _same(creds.password or "", settings.basic_auth_pass)
    return ok_user and ok_pass


def init_app(app: Flask) -> None:
    @app.before_request
    def check_credentials() -> None:
        from backend.context import context

        settings = context().settings
        if request.endpoint == "routes.webhook" and settings.webhook_secret:
            return None  # webhook_trusted(), called by the route
        if not settings.auth_enabled:
            return None
        creds = request.authorization
        if request.endpoint in OPEN_ENDPOINTS and creds is None:
            return None
        if creds is None or creds.type != "basic":
            raise Unauthorized(
                "this backend requires HTTP basic auth: set the same user and password on the "
                "model connection in Label Studio (Settings > Model)"
            )
        if not basic_auth_ok(settings):
            raise Unauthorized("wrong basic auth user or password")
        return None

    @app.after_request
    def challenge(response: Response) -> Response:
        if response.status_code == 401 and request.endpoint != "routes.webhook":
            response.headers["WWW-Authenticate"] = 'Basic realm="prefloop"'
        return response


def webhook_trusted(settings: Settings) -> bool:
    """For /webhook with WEBHOOK_SECRET set: True when the request carries the secret (or valid basic
    auth), False when it carries neither; a wrong secret raises Forbidden at once."""
    given = request.headers.get(WEBHOOK_SECRET_HEADER)
    if given is not None and _same(given, settings.webhook_secret):
        return True
    if given is not None:
        raise Forbidden(
            f"wrong {WEBHOOK_SECRET_HEADER}: it must equal WEBHOOK_SECRET (re-run `prefloop init` "
            "after changing the secret)"
        )
    return settings.auth_enabled and basic_auth_ok(settings)


def untrusted_webhook(action: object) -> Unauthorized:
    return Unauthorized(
        f"{str(action)[:64]} refused: this /webhook requires the {WEBHOOK_SECRET_HEADER} header "
        "(WEBHOOK_SECRET is set). Run `prefloop init` to put it on the project's webhook in Label "
        "Studio, or add it there by hand (README, Security)"
    )
