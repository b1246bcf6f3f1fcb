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
    # What libraries log through the standard logging module (asyncio's "Task exception
    # was never retrieved", aiohttp, aiosmtpd) becomes one JSON event too, never a
    # multi-line traceback on stderr (issue 16 §5).
    logging.root.handlers = [StdlibBridge()]
    logging.root.setLevel(logging.WARNING)


class StdlibBridge(logging.Handler):
    """A stdlib log record as the event `log.<logger>`: its first line, the exception's
    class name, no traceback (it may quote data: an SQL statement, a header)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            first = (record.getMessage().splitlines() or [""])[0][:300]
            fields = {"message": first, "logger": record.name}
            if record.exc_info and record.exc_info[0] is not None:
                fields["error"] = record.exc_info[0].__name__
            method = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning"}.get(
                record.levelno, "error")
            getattr(structlog.get_logger("stdlib"), method)("log." + record.name.split(".")[0], **fields)
        except Exception:  # logging never raises into the code that logs, nor prints a traceback
            return
