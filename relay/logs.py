"""structlog set-up: one JSON event per line on stderr.

Never log a body, a subject, a file name or a plain INS: INS go through
`MasterKey.pseudonym` (a keyed hash), which the call sites pass as `ins_hash`.
"""
from __future__ import annotations

import logging
import sys

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info") -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # aiosmtpd logs peers and, at debug level, DATA lines (health content): keep it quiet.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
