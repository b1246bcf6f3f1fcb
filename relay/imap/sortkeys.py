"""What SORT and THREAD (RFC 5256, RFC 5957) read of a message: a few header fields,
extracted once and cached, and the base subject of RFC 5256 §2.1.

Implementation notes:
- Only the header block is parsed (never the body), in a worker thread (the caller's
  business); the result is a small frozen record, cached per message: a
  message never changes under its UID, so a cached entry is never stale, and a second
  SORT of the same folder decrypts nothing. The key is the message's sealed blob id
  (random, never reused, shared by copies of the same bytes), not a folder id and UID:
  SQLite may give a deleted folder's id to a new one, whose UIDs start again at 1. The cache is bounded in entries (LRU);
  it holds subjects and addresses, like the decrypted messages a FETCH holds, and
  never goes to disk or logs.
- Strings compare with the i;ascii-casemap collation (RFC 5256 §2.2, RFC 4790 §9.2):
  ASCII letters upper-cased, every other character as is.
"""
from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections import OrderedDict
from dataclasses import dataclass

from policy.mime import decode_header, parse_addresses, unfold

CACHE_ENTRIES = 200_000  # about 300 bytes each: some 60 MB at most, for all sessions


@dataclass(frozen=True, slots=True)
class SortFields:
    """One message's sort and thread keys."""

    subject: str  # base subject (RFC 5256 §2.1), i;ascii-casemap folded
    is_reply: bool  # the base subject extraction removed a reply/forward marker
    sent: float | None  # the Date: header, seconds since the epoch (UTC); None if absent or bad
    from_mailbox: str  # addr-mailbox of the first address, folded ("" when none)
    to_mailbox: str
    cc_mailbox: str
    display_from: str  # RFC 5957: display name, else addr-spec, folded
    display_to: str
    message_id: str | None  # "<...>" as written, None when absent
    references: tuple[str, ...]  # References, else the first In-Reply-To id


def casemap(text: str) -> str:
    """i;ascii-casemap (RFC 4790 §9.2)."""
    return text.upper() if text.isascii() else "".join(c.upper() if c.isascii() else c for c in text)


_WSP_RUN = re.compile(r"[ \t\r\n]+")
_TRAILER = re.compile(r"(?:[ \t]|\(fwd\))\Z", re.IGNORECASE)
_BLOB = r"\[[^\[\]]*\][ \t]*"
# subj-leader = (*subj-blob subj-refwd) / WSP; subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_REFWD = re.compile(r"(?:%s)*(?:re|fwd?)[ \t]*(?:%s)?:" % (_BLOB, _BLOB), re.IGNORECASE)
_LEADING_BLOB = re.compile(_BLOB)


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1 base subject, and whether a reply/forward marker was removed.
    `subject` is already decoded (RFC 2047); the result is not yet casemapped."""
    text = _WSP_RUN.sub(" ", subject)  # (1): runs of whitespace are one space
    reply = False
    while True:
        # (2) trailing "(fwd)" and whitespace
        while True:
            m = _TRAILER.search(text)
            if m is None:
                break
            reply = reply or m.group(0) != " " and m.group(0) != "\t"
            text = text[:m.start()]
        # (3)-(5) leaders ("Re:", "Fwd:", "[list] Re:", whitespace) and leading blobs
        while True:
            if text[:1] in (" ", "\t"):
                text = text.lstrip(" \t")
                continue
            m = _REFWD.match(text)
            if m is not None:
                text = text[m.end():]
                reply = True
                continue
            m = _LEADING_BLOB.match(text)
            if m is not None and text[m.end():]:  # (4) only if something is left
                text = text[m.end():]
                continue
            break
        # (6) "[fwd: ... ]" wrapping the rest
        if text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            reply = True
            continue
        return text, reply


_MSG_ID = re.compile(r"<[^<>\s]+>")


def _first_mailbox(value: bytes | None) -> tuple[str, str]:
    """(addr-mailbox, display) of the first address of a header (RFC 5256 §3 SORT
    FROM/TO/CC; RFC 5957 DISPLAYFROM/DISPLAYTO)."""
    if value is None:
        return "", ""
    for a in parse_addresses(value.decode("utf-8", "surrogateescape")):
        if a.mailbox is None:  # a group's end
            continue
        if a.host is None:  # a group's start: its name is the mailbox, as in the ENVELOPE
            return a.mailbox, a.mailbox
        mailbox = a.mailbox or ""
        name = decode_header(a.name.encode("utf-8", "surrogateescape")).strip() if a.name else ""
        return mailbox, name or f"{mailbox}@{a.host}"
    return "", ""


def _header_fields(raw: bytes) -> dict[str, bytes]:
    """The first occurrence of each field of the header block, unfolded."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = raw if end < 0 else raw[:end]
    fields: dict[str, bytes] = {}
    name: str | None = None
    value: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and name is not None:
            value.append(line)
            continue
        if name is not None and name not in fields:
            fields[name] = unfold(b"".join(value)).strip()
        key, colon, rest = line.partition(b":")
        name, value = (key.strip().decode("latin-1").upper(), [rest]) if colon else (None, [])
    if name is not None and name not in fields:
        fields[name] = unfold(b"".join(value)).strip()
    return fields


def extract(raw: bytes) -> SortFields:
    """The sort and thread keys of a stored message. Never raises."""
    f = _header_fields(raw)
    subject, reply = base_subject(decode_header(f.get("SUBJECT", b"")))
    sent: float | None = None
    if "DATE" in f:
        try:
            when = email.utils.parsedate_to_datetime(f["DATE"].decode("latin-1"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            sent = when.timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            sent = None
    frm, dfrom = _first_mailbox(f.get("FROM"))
    to, dto = _first_mailbox(f.get("TO"))
    cc, _ = _first_mailbox(f.get("CC"))
    mid = _MSG_ID.search(f.get("MESSAGE-ID", b"").decode("latin-1"))
    refs = tuple(_MSG_ID.findall(f.get("REFERENCES", b"").decode("latin-1")))
    if not refs:  # RFC 5256 §3 REFERENCES (1): else the first message id of In-Reply-To
        first = _MSG_ID.search(f.get("IN-REPLY-TO", b"").decode("latin-1"))
        refs = (first.group(0),) if first else ()
    return SortFields(casemap(subject), reply, sent, casemap(frm), casemap(to), casemap(cc),
                      casemap(dfrom), casemap(dto), mid.group(0) if mid else None, refs)


class SortCache:
    """SortFields by blob id, least recently used first out."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self._entries = entries
        self._data: OrderedDict[str, SortFields] = OrderedDict()

    def get(self, key: str) -> SortFields | None:
        got = self._data.get(key)
        if got is not None:
            self._data.move_to_end(key)
        return got

    def put(self, key: str, fields: SortFields) -> None:
        self._data[key] = fields
        self._data.move_to_end(key)
        while len(self._data) > self._entries:
            self._data.popitem(last=False)
