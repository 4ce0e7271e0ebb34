"""Logging set up by entry points (never at import). Worker lines carry the RQ job id."""

from __future__ import annotations

import logging
import sys

from prefloop.redact import RedactingFilter

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(job_id)s] %(message)s"


class JobIdFilter(logging.Filter):
    """Stamps the current RQ job id (or "-") on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            job_id = "-"
            try:
                from rq import get_current_job

                job = get_current_job()
                if job is not None:
                    job_id = job.id
            except Exception:  # logging must never fail
                pass
            record.job_id = job_id
        return True


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_prefloop", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._prefloop = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(JobIdFilter())
    handler.addFilter(RedactingFilter())  # passwords in URLs (REDIS_URL, LABEL_STUDIO_URL) never reach a log
    root.addHandler(handler)
