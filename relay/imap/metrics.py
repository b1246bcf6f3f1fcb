"""The IMAP server's metrics, declared once (prometheus_client refuses a second
registration): the server and the session both observe them."""
from __future__ import annotations

from prometheus_client import Histogram

COMMAND_SECONDS = Histogram("mssante_imap_command_seconds", "IMAP command duration", ["command"],
                            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30))
_BY_COMMAND: dict[str, Histogram] = {}  # children by command name: the tables' names, bounded


def command_seconds(name: str) -> Histogram:
    """COMMAND_SECONDS' child for this command, looked up once: labels() takes a lock
    and checks its arguments on every call (1% of the event loop under imaptest's
    stress, issue 12 §3). Only names from the command tables come here."""
    child = _BY_COMMAND.get(name)
    if child is None:
        child = _BY_COMMAND[name] = COMMAND_SECONDS.labels(name)
    return child
