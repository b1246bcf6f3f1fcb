"""Errors the store raises for what a caller asked (no such mailbox, document, queue
entry...), as opposed to failures: one base, so every front turns them into its own
answer (the CLI: one line, exit status 2) the same way."""
from __future__ import annotations


class StoreError(Exception):
    pass
