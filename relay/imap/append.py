"""APPEND with MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469).

Implementation notes:
- Several messages in one APPEND are stored all or none, in one store transaction
  (Store.deliver_all), their UIDs in order: APPENDUID gives them as a set (RFC 4315).
- The reader seals every APPEND message larger than SPOOL_MIN into a spool of its own
  as it comes (session.read_command), a MULTIAPPEND's several large messages too; the
  whole command stays within imap.max_line + imap.max_literal. Every other literal is
  held in memory within imap.max_line, so a large CATENATE TEXT part is refused (BAD
  [TOOBIG], or BAD when it sits where only a message may) rather than held whole in
  memory.
- CATENATE's URL parts (RFC 5092 IMAP URLs, relative "/mailbox;uidvalidity=n/;uid=n
  [/;section=s][/;partial=o.l]" or absolute) may only name the user's own folders:
  a guardian cannot copy a child's mail into their own mailbox. A URL that names
  nothing we can read gets NO [BADURL url] (RFC 4469 §5), after the target folder was
  checked (NO [TRYCREATE] first, as Dovecot answers).
- Every message read through a URL is audited like a FETCH of its content.
"""
from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailbox_store.recent import claim_all, uidvalidity_of
from mailbox_store.spool import SpooledMessage
from policy.mime import parse
from relay.imap import fetch as fetchmod
from relay.imap.parser import ParseError, Parser
from relay.imap.sequence import compress
from mailbox_store.folders import FolderError
from relay.imap.names import resolve_own
from relay.imap.replies import Reply, no, ok
from relay.imap.types import Section

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from relay.imap.session import Session

MAX_MESSAGES = 100  # messages in one MULTIAPPEND


class FolderGone(Exception):
    """The selected folder was deleted (or re-created) before the APPEND's writer job."""


class BadUrl(Exception):
    """A CATENATE URL that names nothing this user may read (RFC 4469 §5 BADURL)."""


@dataclass(frozen=True, slots=True)
class _Url:
    url: str


@dataclass
class _Message:
    flags: list[str]
    when: dt.datetime | None
    content: bytes | None  # None: the spooled literal
    parts: list[bytes | _Url] | None = None  # CATENATE


def _parse_message(p: Parser) -> _Message:
    """append-message (RFC 3502 §6.3.11, RFC 4469 §5): [flag-list SP] [date-time SP]
    (literal / "CATENATE" SP "(" cat-part *(SP cat-part) ")")."""
    flags: list[str] = []
    when: dt.datetime | None = None
    if p.peek() == b"(":
        flags = p.flag_list(allow_recent=False)
        p.sp()
    if p.peek() == b'"':
        when = p.date_time()
        p.sp()
    if p.peek_word().upper() == "CATENATE":
        p.atom()
        p.sp()
        p.expect(b"(")
        parts: list[bytes | _Url] = []
        while True:
            kind = p.atom().upper()
            p.sp()
            if kind == "TEXT":
                parts.append(p.literal_only())
            elif kind == "URL":
                parts.append(_Url(p.astring()))
            else:
                raise p.error("partie CATENATE inconnue / unknown CATENATE part")
            if p.take(b")"):
                break
            p.sp()
        return _Message(flags, when, b"", parts)
    return _Message(flags, when, p.message_literal())


_URL_PART = re.compile(r"^(?P<mailbox>[^;]*)(?:;uidvalidity=(?P<uidvalidity>\d+))?$", re.IGNORECASE)


async def _url_bytes(s: Session, url: str) -> bytes:
    """The octets an IMAP URL (RFC 5092) names, from the user's own folders."""
    assert s.user is not None
    path = url
    if path.lower().startswith("imap://"):
        slash = path.find("/", len("imap://"))
        if slash < 0:
            raise BadUrl
        path = path[slash:]
    if not path.startswith("/"):
        raise BadUrl
    pieces = path[1:].split("/;")
    m = _URL_PART.match(pieces[0])
    if m is None or len(pieces) < 2:
        raise BadUrl
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        key, eq, value = piece.partition("=")
        if not eq or key.lower() in params:
            raise BadUrl
        params[key.lower()] = value
    if set(params) - {"uid", "section", "partial"} or not params.get("uid", "").isdigit():
        raise BadUrl
    try:
        folder = await resolve_own(s, urllib.parse.unquote(m["mailbox"].rstrip("/"), errors="strict"))
    except (FolderError, UnicodeDecodeError) as e:  # a guardian's ward, an undecodable name
        raise BadUrl from e
    info = await s.server.store.folder(s.user.id, folder)
    if info is None or (m["uidvalidity"] is not None and int(m["uidvalidity"]) != info.uidvalidity):
        raise BadUrl
    got = await s.server.store.fetch_raw_many(s.user.ins, folder, [int(params["uid"])])
    raw = got.get(int(params["uid"]))
    if raw is None:
        raise BadUrl
    await s.server.store.audit(s.user.id, "patient", "message.read", f"{folder}: 1 message(s) (CATENATE)", s.peer)
    section = Section()
    if "section" in params:
        try:
            sp = Parser(b"[" + urllib.parse.unquote(params["section"]).upper().encode("ascii") + b"]")
            section = sp._section()
            sp.end()
        except (ParseError, UnicodeEncodeError) as e:
            raise BadUrl from e
    partial = None
    if "partial" in params:
        offset, _, length = params["partial"].partition(".")
        if not offset.isdigit() or (length and not length.isdigit()):
            raise BadUrl
        partial = (int(offset), int(length) if length else len(raw))
    data = raw if section == Section() else await s.server.offload(
        lambda: fetchmod._section_data(parse(raw), raw, section))
    if data is None:
        raise BadUrl
    return fetchmod._partial(data, partial) or b""


async def cmd_append(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    name = p.mailbox()
    p.sp()
    messages = [_parse_message(p)]
    while p.take(b" "):  # RFC 3502 MULTIAPPEND
        if len(messages) >= MAX_MESSAGES:
            return no(f"au plus {MAX_MESSAGES} messages par APPEND / at most {MAX_MESSAGES} messages "
                      "per APPEND", "LIMIT")
        messages.append(_parse_message(p))
    p.end()
    assert s.user is not None
    name = await resolve_own(s, name)
    sel = s.selected
    into_selected = sel is not None and not sel.readonly and sel.owner.id == s.user.id and sel.name == name
    # the folder this session has open exists with the view's UIDVALIDITY (a folder deleted
    # or renamed ends the view: Session.check_access, before this command): no read for it,
    # one reader hop less per APPEND (issue 12 §3); the writer job still checks it below
    uidvalidity = sel.uidvalidity if into_selected and sel is not None else \
        await s.server.store.folder_uidvalidity(s.user.id, name)  # no counts needed
    if uidvalidity is None:
        return no(f"no folder {name}", "TRYCREATE")
    limit = s.server.config.imap_max_literal
    items: list[tuple[bytes | SpooledMessage, dt.datetime | None, list[str]]] = []
    spools = iter(s.spools)  # the spooled messages, in the order of their literals
    for m in messages:
        content: bytes | SpooledMessage
        if m.parts is not None:
            pieces: list[bytes] = []
            size = 0
            for part in m.parts:
                if isinstance(part, _Url):
                    try:
                        data = await _url_bytes(s, part.url)
                    except BadUrl:
                        # RFC 4469 §5: the URL back, as the client sent it (US-ASCII only)
                        safe = part.url if part.url.isascii() and part.url.isprintable() and \
                            "]" not in part.url else ""
                        return no("URL invalide / invalid URL", f"BADURL {safe}" if safe else "BADURL")
                else:
                    data = part
                size += len(data)
                if size > limit:
                    return no("message trop grand / message too large", "TOOBIG")
                pieces.append(data)
            content = b"".join(pieces)
            if b"\x00" in content:  # RFC 4469 §5: no NUL in a CATENATE result
                return no("octet NUL dans le message / NUL octet in the message")
        elif m.content is None:
            content = next(spools)
            assert content.finished
        else:
            content = m.content
        if isinstance(content, bytes) and not content:
            return no("empty message")
        items.append((content, m.when, m.flags))
    if into_selected and sel is not None:
        # into the folder this session has open read-write: the messages are its
        # \\Recent ones (RFC 3501 §2.3.2, first to see them), claimed in the APPEND's own
        # transaction rather than by a second writer job once announced (issue 12 §3)
        folder_id, got = sel.folder_id, []

        def after(conn: Connection) -> None:
            if uidvalidity_of(conn, folder_id) != uidvalidity:  # re-created meanwhile on another node
                raise FolderGone
            got[:] = [claim_all(conn, folder_id)]  # a retried batch runs this again: the last run counts

        try:
            delivered = await s.server.store.deliver_all(s.user, items, name, after=after)
        except FolderGone:  # the writer rolled the APPEND back: nothing was added
            return no(f"no folder {name}", "TRYCREATE")
        if got:
            s.server.store.claimed(folder_id, got[0][1], uidvalidity)
            sel.claimed_by_append(*got[0])
    elif len(items) == 1 and isinstance(items[0][0], SpooledMessage):
        delivered = await s.server.store.deliver_spooled([s.user], items[0][0], internal_date=items[0][1],
                                                         folder=name, flags=items[0][2])
    else:
        delivered = await s.server.store.deliver_all(s.user, items, name)
    return ok("APPEND done", f"APPENDUID {uidvalidity} {compress(d.uid for d in delivered)}")

