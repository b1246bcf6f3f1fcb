"""Whether the TEST address may answer a message (DESIGN.md §4 "TEST address").

Implementation notes:
- An automatic reply goes to the envelope sender (RFC 3834 §4: the Return-Path), so
  the sender checks look at `envelope_from`, not at `From:`.
- Refuse rather than risk a loop: when a header cannot be read it counts as present
  (an unreadable `Auto-Submitted` is not "no").
- Headers are read from `raw_items()` (policy.mime.Headers, or a stdlib Message),
  never through the header parser of `email.policy.default`, which can raise on
  hostile input.
- Pure: the caller decodes the subject (RFC 2047) and the text body, keeps the send
  times per sender and passes them in.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email.message import Message
from email.utils import getaddresses  # an address-list reader: no message parser

from policy.addresses import PATIENT_DOMAIN, TEST_LOCAL_PART
from policy.mime import Headers

# Reasons not to answer, for logs and metrics (`event="autoreply.refused" reason=…`).
NULL_SENDER = "null_sender"
UNUSABLE_SENDER = "unusable_sender"
OWN_ADDRESS = "own_test_address"
AUTO_SUBMITTED = "auto_submitted"
RESPONSE_SUPPRESSED = "auto_response_suppressed"
MAILING_LIST = "mailing_list"
PRECEDENCE = "precedence"
ROLE_SENDER = "role_sender"
REPORT = "report"

# Local parts used as return addresses by lists, responders and bounce handlers
# (RFC 3834 §2: "owner-*", "*-request", "MAILER-DAEMON", etc.), compared in lower case
# after dropping a "+detail" (VERP bounce addresses).
_ROLE_NAMES = frozenset({
    "mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster", "listserv", "majordomo",
    "noreply", "no-reply", "no_reply", "donotreply", "do-not-reply", "do_not_reply",
})
_ROLE_PREFIXES = ("owner-",)
_ROLE_SUFFIXES = ("-request",)

# [MS-OXCMAIL] §2.2.3.2.14: the values that ask not to send out-of-office or other
# automatic replies ("DR", "NDR", "RN", "NRN" are about reports, not replies).
_SUPPRESS_VALUES = frozenset({"all", "autoreply", "oof"})

# RFC 2076 §3.9 / RFC 3834 §2: traffic from lists and bulk senders.
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})

_TEST_WORD = "TEST"


def auto_reply_refusal(envelope_from: str, headers: Message | Headers, *,
                       domain: str = PATIENT_DOMAIN) -> str | None:
    """The reason not to answer this message automatically, or None to answer it.

    `envelope_from` is the SMTP MAIL FROM path, with or without angle brackets
    ("<>" or "" is the null sender); `headers` the received message (any policy).
    """
    sender = _envelope_address(envelope_from)
    # RFC 3834 §2: a response to a null reverse-path (RFC 5321 §4.5.5: bounces,
    # DSNs, MDNs) would go nowhere useful; answering one is how loops start.
    if sender is None:
        return NULL_SENDER
    local, at, host = sender.rpartition("@")
    if not at or not local or not host:
        return UNUSABLE_SENDER
    local = local.strip('"').lower()
    host = host.lower().rstrip(".")
    own = (TEST_LOCAL_PART, domain.lower())
    if (local, host) == own or own in _from_addresses(headers):
        return OWN_ADDRESS  # our own acknowledgement came back: a loop
    fields = _fields(headers)
    # RFC 3834 §2 and §5: any Auto-Submitted value other than "no" (an unknown
    # keyword, or an empty or unreadable field, counts as automatic).
    if any(_keyword(v) != "no" for v in fields.get("auto-submitted", ())):
        return AUTO_SUBMITTED
    for value in fields.get("x-auto-response-suppress", ()):
        tokens = {t.strip().lower() for t in _strip_comments(value).split(",")}
        if tokens & _SUPPRESS_VALUES:
            return RESPONSE_SUPPRESSED
    # RFC 2369 (List-Help, List-Post, List-Unsubscribe …), RFC 2919 (List-Id),
    # RFC 8058 (List-Unsubscribe-Post): any of them means a list sent it.
    if any(name.startswith("list-") for name in fields):
        return MAILING_LIST
    if any(_keyword(v) in _BULK_PRECEDENCE for v in fields.get("precedence", ())):
        return PRECEDENCE
    if _is_role(local):
        return ROLE_SENDER
    # RFC 6522: a report (DSN, MDN) is never answered, whatever its envelope says.
    if any(_keyword(v) == "multipart/report" for v in fields.get("content-type", ())):
        return REPORT
    return None


def is_test_request(subject: str, body_text: str) -> bool:
    """DESIGN.md §4: the subject and the body both contain "TEST".

    Case-sensitive on purpose: the ANS documentation of the address asks for "TEST"
    in capitals in both, and a conformance tester must see the same behaviour here
    as at any other MSSante operator. A lower-case "test" (or "attestation") is
    ordinary text and gets no acknowledgement. `subject` is the decoded subject
    (RFC 2047), `body_text` the decoded text of the message.
    """
    return _TEST_WORD in subject and _TEST_WORD in body_text


def within_budget(sent_times: Sequence[float], now: float, max_per_window: int,
                  window_seconds: float) -> bool:
    """Whether one more reply to a sender fits: fewer than `max_per_window` replies
    were sent to it in the window (now - window_seconds, now].

    A reply sent exactly `window_seconds` ago has left the window. Times after `now`
    (the clock stepped back) still count, so a clock change never grants more replies.
    """
    if max_per_window <= 0:
        return False
    return len(recent(sent_times, now, window_seconds)) < max_per_window


def recent(sent_times: Iterable[float], now: float, window_seconds: float) -> list[float]:
    """The send times still inside the window: what a caller keeps per sender."""
    start = now - window_seconds
    return [t for t in sent_times if t > start]


def _envelope_address(envelope_from: str) -> str | None:
    path = envelope_from.strip()
    if path.startswith("<") and path.endswith(">"):
        path = path[1:-1].strip()
    # RFC 5321 §4.1.2 / Appendix C: a source route "@a,@b:user@c" is ignored.
    if path.startswith("@") and ":" in path:
        path = path.split(":", 1)[1]
    return path or None


def _is_role(local: str) -> bool:
    base = local.split("+", 1)[0]
    return (base in _ROLE_NAMES or local.startswith(_ROLE_PREFIXES)
            or base.endswith(_ROLE_SUFFIXES))


def _fields(headers: Message | Headers) -> dict[str, list[str]]:
    """Header values by lower-case name, unfolded, from the raw stored headers."""
    out: dict[str, list[str]] = {}
    for name, value in headers.raw_items():
        text = re.sub(r"\r?\n", "", str(value))
        out.setdefault(str(name).strip().lower(), []).append(text)
    return out


def _from_addresses(headers: Message | Headers) -> set[tuple[str, str]]:
    values = [str(v) for n, v in headers.raw_items() if str(n).strip().lower() in ("from", "sender")]
    found = set()
    for _, addr in getaddresses(values):
        local, at, host = addr.rpartition("@")
        if at:
            found.add((local.strip('"').lower(), host.lower().rstrip(".")))
    return found


def _strip_comments(value: str) -> str:
    """Remove RFC 5322 §3.2.2 comments, nested and with quoted-pairs; an unclosed
    comment runs to the end of the value."""
    out: list[str] = []
    depth = 0
    escaped = False
    for ch in value:
        if depth:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            continue
        if ch == "(":
            depth = 1
        else:
            out.append(ch)
    return "".join(out)


def _keyword(value: str) -> str:
    """The leading token of a field, before any ";" parameter (RFC 3834 §5:
    `auto-submitted = ("no" / "auto-generated" / "auto-replied" / extension)
    opt-parameter-list`), in lower case, comments and folding whitespace removed."""
    return _strip_comments(value).split(";", 1)[0].strip().lower()
