"""The IMAP server's metrics, declared once (prometheus_client refuses a second
registration): the server and the session both observe them."""
from __future__ import annotations

from prometheus_client import Histogram

COMMAND_SECONDS = Histogram("mssante_imap_command_seconds", "IMAP command duration", ["command"],
                            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30))
