"""A command's tagged answer (RFC 9051 §7.1: OK, NO or BAD, an optional response code
in brackets, a text), shared by the command handlers of session.py, append.py and
ordering.py without their importing the session."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Reply:
    status: str  # OK, NO, BAD
    text: str
    code: str | None = None  # response code, without brackets


def ok(text: str = "done", code: str | None = None) -> Reply:
    return Reply("OK", text, code)


def no(text: str, code: str | None = None) -> Reply:
    return Reply("NO", text, code)


def bad(text: str, code: str | None = None) -> Reply:
    return Reply("BAD", text, code)
