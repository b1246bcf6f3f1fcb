"""What the webmail shows of a stored message: a summary for the lists (correspondent,
subject, date, attachment count, message ids) and the full view (text, sanitised HTML,
attachments). Pure functions over the stored bytes, run in a thread by the caller
(parsing a 25 MB message must not stall the event loop), plus a bounded cache of
summaries: a (folder UIDVALIDITY, UID) pair names one message for ever (RFC 3501
§2.3.1.1), so a summary never goes stale."""
from __future__ import annotations

import datetime as dt
import email.utils
from collections import OrderedDict
from dataclasses import dataclass

from policy.attachments import Attachment, AttachmentLimits, Kind, Part, classify, mime_parts
from policy.conversation import parse_msg_ids
from policy.decisions import Decision
from policy.mime import decode_header, parse, parse_addresses
from relay.web.sanitize import clean_html

VIEWABLE = {Kind.PDF, Kind.JPEG, Kind.PNG}  # shown inside the page as well as downloaded


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    address: str


@dataclass(frozen=True, slots=True)
class Summary:
    uid: int
    sender: Person | None
    to: tuple[Person, ...]
    reply_to: Person | None
    subject: str
    date: dt.datetime | None
    attachments: int
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AttachmentView:
    part: str  # IMAP part number: the id in the URL
    filename: str
    mime_type: str  # the real kind's type; application/octet-stream when refused
    size: int
    viewable: bool


@dataclass(frozen=True, slots=True)
class FullView:
    summary: Summary
    text: str | None  # text/plain body
    html: str | None  # sanitised text/html body (when there is no text/plain one)
    attachments: tuple[AttachmentView, ...]


def _people(value: bytes | None) -> tuple[Person, ...]:
    if value is None:
        return ()
    out = []
    for a in parse_addresses(decode_header(value)):
        if a.mailbox is None or a.host is None:
            continue
        out.append(Person(a.name or "", f"{a.mailbox}@{a.host}"))
    return tuple(out)


def _date(value: bytes | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        d = email.utils.parsedate_to_datetime(decode_header(value))
    except (TypeError, ValueError, IndexError):
        return None
    return d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)


def _ids(value: bytes | None) -> tuple[str, ...]:
    return parse_msg_ids(None if value is None else value.decode("utf-8", "replace"))


def _attachments(raw: bytes, limits: AttachmentLimits) -> tuple[list[Part], list[tuple[Part, Attachment | Decision]]]:
    """(the body candidates, the attachments with their verdict)."""
    parts = mime_parts(raw, limits)
    if isinstance(parts, Decision):
        return [], []
    bodies, files = [], []
    for p in parts:
        verdict = classify(p, limits)
        if verdict is None:
            bodies.append(p)
        else:
            files.append((p, verdict))
    return bodies, files


def summarise(uid: int, raw: bytes, limits: AttachmentLimits) -> Summary:
    return _summary(uid, raw, _attachments(raw, limits)[1])


def _summary(uid: int, raw: bytes, files: list[tuple[Part, Attachment | Decision]]) -> Summary:
    root = parse(raw)
    sender = _people(root.get("From"))
    msg_ids = _ids(root.get("Message-ID"))
    subject = root.get("Subject")
    return Summary(uid, sender[0] if sender else None, _people(root.get("To")),
                   next(iter(_people(root.get("Reply-To"))), None),
                   decode_header(subject).strip() if subject is not None else "", _date(root.get("Date")),
                   len(files), msg_ids[0] if msg_ids else None, _ids(root.get("In-Reply-To")),
                   _ids(root.get("References")))


def full_view(uid: int, raw: bytes, limits: AttachmentLimits) -> FullView:
    _, files = _attachments(raw, limits)  # once: it decodes every part (a PDF's base64 too)
    summary = _summary(uid, raw, files)
    text = html = None
    plain = _body(raw, "plain")
    if plain is not None:
        text = plain
    else:
        rich = _body(raw, "html")
        if rich is not None:
            html = clean_html(rich)
    views = []
    for p, verdict in files:
        if isinstance(verdict, Attachment):
            views.append(AttachmentView(p.path, p.filename or f"piece-jointe-{p.path}", verdict.mime_type,
                                        len(p.content), verdict.kind in VIEWABLE))
        else:  # refused by today's rules: offered only as an opaque download
            views.append(AttachmentView(p.path, p.filename or f"piece-jointe-{p.path}", "application/octet-stream",
                                        len(p.content), False))
    return FullView(summary, text, html, tuple(views))


def _body(raw: bytes, subtype: str) -> str | None:
    """The first text/<subtype> part that is not a file, decoded with its charset."""
    for node in parse(raw).walk():
        if not node.is_text or node.subtype.lower() != subtype:
            continue
        named = any(n.lower() in ("filename", "filename*") for n, _ in node.disposition_params) or node.param("name")
        if (node.disposition or "").lower() == "attachment" or named:
            continue
        return node.text()
    return None


def attachment(raw: bytes, part: str, limits: AttachmentLimits) -> tuple[AttachmentView, bytes] | None:
    """One attachment's view and bytes, by part number; None when there is none."""
    _, files = _attachments(raw, limits)
    for p, verdict in files:
        if p.path == part:
            ok = isinstance(verdict, Attachment)
            view = AttachmentView(p.path, p.filename or f"piece-jointe-{p.path}",
                                  verdict.mime_type if isinstance(verdict, Attachment) else "application/octet-stream",
                                  len(p.content), ok and verdict.kind in VIEWABLE)  # type: ignore[union-attr]
            return view, p.content
    return None


class SummaryCache:
    """Summaries by (mailbox id, folder, UIDVALIDITY, UID), least recently used out."""

    def __init__(self, capacity: int = 20_000):
        self.capacity = capacity
        self._items: OrderedDict[tuple[int, str, int, int], Summary] = OrderedDict()

    def get(self, key: tuple[int, str, int, int]) -> Summary | None:
        s = self._items.get(key)
        if s is not None:
            self._items.move_to_end(key)
        return s

    def put(self, key: tuple[int, str, int, int], summary: Summary) -> None:
        self._items[key] = summary
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
