"""Credentials never leave the process: URLs with a password (REDIS_URL=redis://:PASSWORD@host,
LABEL_STUDIO_URL=http://user:PASSWORD@host) are masked wherever they reach a response, the status
page or a log line.

`redact_url` masks one URL; `redact` masks every `scheme://user:password@` in a text (an error
message, a log line); `RedactingFilter` applies `redact` to every log record, arguments included,
and `prefloop.logs.setup_logging` installs it on prefloop's handler.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# scheme://[user][:password]@ ... the userinfo part, up to the last "@" before the host.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/\s]*):(?P<password>[^@\s/]*)@")


def redact_url(url: str) -> str:
    """`url` with its password (if any) replaced by ***; a URL without one is returned unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.password is None:
        return redact(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ""
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:{MASK}@{host}{port}", parts.path, parts.query, parts.fragment))


def redact(text: str) -> str:
    """Every `scheme://user:password@` in `text` with the password masked."""
    if "://" not in text or "@" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


class RedactingFilter(logging.Filter):
    """Masks passwords in URLs of a log record's message, its arguments and its traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
