"""One exception class per condition. The web tier maps `PrefloopError` subclasses to JSON 4xx/5xx
answers through `http_status`; workers let them reach RQ so the failure is recorded with its message."""

from __future__ import annotations


class PrefloopError(Exception):
    """Base class; the message states the cause and, where there is one, the fix."""

    http_status = 500


class SettingsError(PrefloopError):
    """An environment variable has a bad value; the message names the variable."""


class BadRequest(PrefloopError):
    """A request body is malformed or misses a field."""

    http_status = 400


class Unauthorized(PrefloopError):
    http_status = 401


class Forbidden(PrefloopError):
    """Credentials were sent but are wrong (e.g. a webhook with the wrong WEBHOOK_SECRET)."""

    http_status = 403


class TooLarge(PrefloopError):
    """A request exceeds a cap (MAX_TEXT_CHARS, items per request, the time budget); the message names it."""

    http_status = 413


class UnknownProject(PrefloopError):
    """The project is not one prefloop serves (not in PROJECTS, never connected through /setup)
    or does not exist in Label Studio."""

    http_status = 404


class LabelConfigError(PrefloopError):
    """The project's labeling config lacks what prefloop needs (a Pairwise tag, the text fields)."""

    http_status = 422


class QueueUnavailable(PrefloopError):
    """Redis cannot be reached; nothing was enqueued."""

    http_status = 503


class LabelStudioUnavailable(PrefloopError):
    """Label Studio cannot be reached or answered with a server error."""

    http_status = 503


class LabelStudioError(PrefloopError):
    """Label Studio refused a request (4xx other than 404), e.g. a bad API key."""

    http_status = 502


class ModelNotFound(PrefloopError):
    """A model directory or version does not exist, or BASE_MODEL cannot be loaded offline."""

    http_status = 404


class InputError(PrefloopError):
    """A prompts file or record is unusable; the message names the file and record."""

    http_status = 400


class JobSkipped(PrefloopError):
    """A job decided not to run (not enough new data, no reward model yet, ...). Jobs return
    the reason in their result rather than raising; this class exists for code paths that unwind."""
