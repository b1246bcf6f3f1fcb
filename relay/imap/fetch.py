"""FETCH data items of one message (RFC 3501 §6.4.5 and §7.4.2, RFC 9051 §6.4.5 and
§7.5.2, RFC 3516 BINARY).

render() returns the parenthesised list that follows "* n FETCH ". Every value goes
through wire.py, so no header a sender wrote can break the response framing: values
with CR, LF, NUL or 8-bit go as literals.

Implementation notes:
- The message is parsed once per render() (mime.parse) and only when an item needs
  its content; FLAGS, UID, INTERNALDATE and RFC822.SIZE come from the MessageView.
- BODYSTRUCTURE and ENVELOPE follow Dovecot's output, which clients are tested
  against: types and parameters as written, a text part without charset gets
  ("charset" "us-ascii"), extension data always complete (md5/params, disposition,
  language, location), language always a list.
- IMAP4rev2 (RFC 9051) renders the same bytes except that \\Recent is gone (§2.3.2);
  refusing RFC822* items in rev2 is the server's business.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from relay.imap import wire
from policy.mime import (
    Address,
    Part,
    UnknownCte,
    find,
    parse,
    parse_addresses,
    to_bytes,
)
from relay.imap.types import FetchAtt, MessageView, Section

__all__ = ["HEADER", "Plan", "UnknownCte", "derive", "from_header", "needs_content", "plan", "render",
           "sets_seen", "unparsed_header_bytes"]

DERIVED_ITEMS = frozenset({b"ENVELOPE", b"BODYSTRUCTURE", b"BODY"})  # what derive() renders
HEADER = b"HEADER"  # derive()'s other item: the message's header block, as stored
HEADERS_PARSED = 2048  # parsed header blocks kept (a few KB each, beside the FETCH cache)
_HEADER_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"})
_FROM_VIEW = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')


def needs_content(atts: list[FetchAtt]) -> bool:
    return any(att.name not in _FROM_VIEW for att in atts)


def sets_seen(atts: list[FetchAtt]) -> bool:
    """RFC 3501 §6.4.5: BODY[...] (not BODY.PEEK), RFC822 and RFC822.TEXT set \\Seen;
    RFC 3516 §4.2: so does BINARY[...] (not BINARY.PEEK). BINARY.SIZE does not."""
    for att in atts:
        if att.name in ("RFC822", "RFC822.TEXT"):
            return True
        if not att.peek and (att.name == "BINARY" or (att.name == "BODY" and att.section is not None)):
            return True
    return False


def from_header(att: FetchAtt) -> bool:
    """Whether the item is answered from the message's header block alone: RFC822.HEADER
    and BODY[HEADER], BODY[HEADER.FIELDS (...)], BODY[HEADER.FIELDS.NOT (...)] of the
    message itself (RFC 3501 §6.4.5), partial or not."""
    if att.name == "RFC822.HEADER":
        return True
    return att.name == "BODY" and att.section is not None and not att.section.part and \
        att.section.text in _HEADER_TEXTS


def derive(raw: bytes, names: frozenset[bytes]) -> dict[bytes, bytes]:
    """ENVELOPE, BODYSTRUCTURE, BODY and/or the header block (HEADER) of a message, from
    one parse (fetchcache.py)."""
    tree = parse(raw)
    out: dict[bytes, bytes] = {}
    if HEADER in names:
        out[HEADER] = tree.header
    if b"ENVELOPE" in names:
        out[b"ENVELOPE"] = _envelope(tree)
    if b"BODYSTRUCTURE" in names:
        out[b"BODYSTRUCTURE"] = _structure(tree, extended=True)
    if b"BODY" in names:
        out[b"BODY"] = _structure(tree, extended=False)
    return out


@dataclass(frozen=True, slots=True)
class Plan:
    """What render() works out from the attributes alone, once per FETCH rather than
    once per message (issue 12 §3: the response names and section specs of 100
    messages were a tenth of the loop's FETCH time): each item to answer, UID first,
    an item asked twice once, with its response name and whether the header block
    answers it."""

    items: tuple[tuple[FetchAtt, bytes, bool], ...]


def plan(atts: list[FetchAtt]) -> Plan:
    items: list[tuple[FetchAtt, bytes, bool]] = []
    done: set[bytes] = set()
    for att in sorted(atts, key=lambda a: a.name != "UID"):  # stable: UID first
        name = _name(att)
        if name not in done:
            done.add(name)
            items.append((att, name, from_header(att)))
    return Plan(tuple(items))


def render(msg: MessageView, atts: list[FetchAtt], raw: bytes | None, rev2: bool = False,
           known: dict[bytes, bytes] | None = None, planned: Plan | None = None) -> bytes:
    """The data items of one FETCH response, e.g. b'(UID 5 FLAGS (\\\\Seen))'.

    UID comes first, then the items in the order asked; an item asked twice (BODY[]
    and BODY.PEEK[] have one name) is answered once. Raises UnknownCte for BINARY of a
    part whose transfer encoding we cannot decode (NO [UNKNOWN-CTE], RFC 3516 §4.3).
    `planned` is plan(atts), when the caller renders several messages.
    """
    items_of = (planned or plan(atts)).items
    tree: Part | None = None
    known = known or {}
    header = known.get(HEADER)  # header items from the header block alone (fetchcache.py)
    if needs_content([a for a, name, by_header in items_of
                      if name not in known and not (header is not None and by_header)]):
        if raw is None:
            raise ValueError("FETCH of message content needs the stored message")
        tree = parse(raw)
    head: Part | None = None
    items: list[bytes] = []
    for att, name, by_header in items_of:
        value = known.get(name) if name in DERIVED_ITEMS else None
        if value is None and tree is None and header is not None and by_header:
            # parsing the header block gives the same header and fields as the message's
            # parse: every header item is the same bytes (tests/unit/imap/test_command_hops.py)
            head = head or _parsed_header(header)
            value = _value(att, msg, head, header, rev2)
        items.append(name + b" " + (value if value is not None else _value(att, msg, tree, raw or b"", rev2)))
    return wire.plist(items)


_HEADS: OrderedDict[bytes, Part] = OrderedDict()  # header block -> its parse, LRU
_HEADS_LOCK = threading.Lock()  # rendering runs on the loop and in the IMAP workers


def _parsed_header(header: bytes) -> Part:
    """A cached header block, parsed: FETCH 1:100 (BODY.PEEK[HEADER.FIELDS (From)])
    again parsed a hundred headers on the event loop each time (issue 12 §3, py-spy).
    Keyed by the block itself (the bytes object the FETCH cache holds: its hash is
    computed once); the parse is only read, never changed, so threads may share it."""
    with _HEADS_LOCK:
        got = _HEADS.get(header)
        if got is not None:
            _HEADS.move_to_end(header)
            return got
    part = parse(header)
    with _HEADS_LOCK:
        _HEADS[header] = part
        while len(_HEADS) > HEADERS_PARSED:
            _HEADS.popitem(last=False)
    return part


def unparsed_header_bytes(headers: list[bytes]) -> int:
    """How many bytes of these header blocks rendering would parse (not kept parsed):
    the caller renders in a worker when they are many."""
    return sum(len(h) for h in headers if h not in _HEADS)


# --- item names ------------------------------------------------------------------

def _name(att: FetchAtt) -> bytes:
    if att.name == "BODY" and att.section is not None:
        return b"BODY[" + _section_spec(att.section) + b"]" + _origin(att)
    if att.name in ("BINARY", "BINARY.SIZE"):
        numbers = att.section.part if att.section is not None else ()
        spec = b".".join(b"%d" % n for n in numbers)
        return att.name.encode("ascii") + b"[" + spec + b"]" + (_origin(att) if att.name == "BINARY" else b"")
    return att.name.encode("ascii")


def _origin(att: FetchAtt) -> bytes:
    # RFC 3501 §7.4.2: the response names the partial's origin octet only
    return b"<%d>" % att.partial[0] if att.partial is not None else b""


def _section_spec(section: Section) -> bytes:
    spec = [b"%d" % n for n in section.part]
    if section.text is not None:
        text = section.text.encode("ascii")
        if section.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            text += b" " + wire.plist([wire.astring(f) for f in section.fields])
        spec.append(text)
    return b".".join(spec)


# --- item values -----------------------------------------------------------------

def _value(att: FetchAtt, msg: MessageView, tree: Part | None, raw: bytes, rev2: bool) -> bytes:
    name = att.name
    if name == "UID":
        return b"%d" % msg.uid
    if name == "FLAGS":
        return _flags(msg, rev2)
    if name == "INTERNALDATE":
        return wire.date_time(msg.internal_date)
    if name == "RFC822.SIZE":
        return b"%d" % msg.size
    if name == "MODSEQ":  # RFC 7162 §3.1.4.1
        return b"(%d)" % msg.modseq
    assert tree is not None
    if name == "ENVELOPE":
        return _envelope(tree)
    if name == "BODYSTRUCTURE":
        return _structure(tree, extended=True)
    if name == "BODY" and att.section is None:
        return _structure(tree, extended=False)
    if name == "RFC822":
        return _body_literal(raw)
    if name == "RFC822.HEADER":
        return _body_literal(tree.header)
    if name == "RFC822.TEXT":
        return _body_literal(tree.body)
    if name == "BODY":
        assert att.section is not None
        return _body_literal(_partial(_section_data(tree, raw, att.section), att.partial))
    if name == "BINARY":
        return _binary_literal(_partial(_binary_data(tree, raw, att.section), att.partial))
    if name == "BINARY.SIZE":
        data = _binary_data(tree, raw, att.section)
        return b"%d" % (len(data) if data is not None else 0)
    raise ValueError(f"unknown fetch attribute {name}")


def _flags(msg: MessageView, rev2: bool) -> bytes:
    flags = set(msg.flags)
    if msg.recent and not rev2:  # RFC 3501 §2.3.2; RFC 9051 removed \Recent
        flags.add("\\Recent")
    elif rev2:
        flags.discard("\\Recent")
    # System flags first, then keywords; a stored value that is not a flag atom is left
    # out rather than sent raw (it would break the framing).
    ordered = sorted(flags, key=lambda f: (not f.startswith("\\"), f.lower()))
    return wire.plist([f.encode("ascii") for f in ordered if _is_flag(f)])


def _is_flag(flag: str) -> bool:
    atom = flag.removeprefix("\\")
    data = atom.encode("utf-8")
    return bool(data) and all(0x21 <= b < 0x7F and b not in _ATOM_SPECIALS for b in data)


def _body_literal(data: bytes | None) -> bytes:
    if data is None:
        return wire.NIL
    # RFC 3501 §4.3: a literal carries no NUL; like Dovecot, a stored NUL goes out
    # as 0x80 (only BINARY may carry it, RFC 3516 §4.2).
    return wire.literal(data.replace(b"\x00", b"\x80"))


def _binary_literal(data: bytes | None) -> bytes:
    if data is None:
        return wire.NIL
    if b"\x00" in data:  # RFC 3516 §3: literal8 for content with NUL
        return b"~" + wire.literal(data)
    return wire.literal(data)


def _partial(data: bytes | None, partial: tuple[int, int] | None) -> bytes | None:
    # RFC 3501 §6.4.5: an origin past the end gives an empty string
    if data is None or partial is None:
        return data
    offset, count = partial
    return data[offset:offset + count]


def _section_data(tree: Part, raw: bytes, section: Section) -> bytes | None:
    """RFC 3501 §6.4.5 BODY[section]: the stored bytes, or None for a part that does
    not exist (answered NIL, as Dovecot does)."""
    if not section.part:
        target = tree
        if section.text is None:
            return raw
    else:
        part = find(tree, section.part)
        if part is None:
            return None
        if section.text is None:
            return part.body
        if section.text == "MIME":
            return part.header
        if part.message is None:
            # HEADER/TEXT only name something in a message/rfc822 part (RFC 3501
            # §6.4.5); elsewhere the answer is an empty string.
            return b""
        target = part.message
    if section.text == "HEADER":
        return target.header
    if section.text == "TEXT":
        return target.body
    if section.text == "MIME":  # the parser refuses it without a part; be lenient
        return target.header
    wanted = set(section.fields)
    keep = section.text == "HEADER.FIELDS"
    lines = [f.raw if f.raw.endswith(b"\n") else f.raw + b"\r\n"
             for f in target.fields if (f.name in wanted) == keep]
    # The blank line that ends a header is part of the answer (RFC 3501 §6.4.5).
    return b"".join(lines) + b"\r\n"


def _binary_data(tree: Part, raw: bytes, section: Section | None) -> bytes | None:
    """RFC 3516 §4.2: BINARY[] is the whole message as stored; BINARY[n] is part n with
    its Content-Transfer-Encoding undone (raises UnknownCte)."""
    numbers = section.part if section is not None else ()
    if not numbers:
        return raw
    part = find(tree, numbers)
    return None if part is None else part.decoded()


# --- BODYSTRUCTURE and BODY (RFC 3501 §7.4.2 body, RFC 9051 §7.5.2) ----------------

def _structure(part: Part, extended: bool) -> bytes:
    if part.children:
        out = b"".join(_structure(c, extended) for c in part.children) + b" " + _s(part.subtype)
        if extended:  # body-ext-mpart
            out += b" " + _params(part.params, text=False) + _ext_common(part)
        return b"(" + out + b")"
    text = part.type.lower() == "text"
    items = [_s(part.type), _s(part.subtype), _params(part.params, text), _ns(part.id),
             _ns(part.description), _s(part.encoding or "7bit"), b"%d" % part.size]
    if part.message is not None:  # body-type-msg
        items += [_envelope(part.message), _structure(part.message, extended), b"%d" % (part.lines or 0)]
    elif text:  # body-type-text
        items.append(b"%d" % (part.lines or 0))
    out = b" ".join(items)
    if extended:  # body-ext-1part
        out += b" " + _ns(part.md5) + _ext_common(part)
    return b"(" + out + b")"


def _params(params: tuple[tuple[str, str], ...], text: bool) -> bytes:
    pairs = list(params)
    if text and not any(n.lower() == "charset" for n, _ in pairs):
        pairs.append(("charset", "us-ascii"))  # RFC 2045 §5.2 default, stated as Dovecot does
    if not pairs:
        return wire.NIL
    return wire.plist([b for n, v in pairs for b in (_s(n), _s(v))])


def _ext_common(part: Part) -> bytes:
    dsp = wire.NIL
    if part.disposition is not None:
        dsp = wire.plist([_s(part.disposition), _params(part.disposition_params, text=False)])
    lang = wire.NIL if part.language is None else wire.plist([_s(t) for t in part.language])
    return b" " + dsp + b" " + lang + b" " + _ns(part.location)


def _s(value: str) -> bytes:
    return wire.string(to_bytes(value))


def _ns(value: str | None) -> bytes:
    return wire.NIL if value is None else _s(value)


# --- ENVELOPE (RFC 3501 §7.4.2) ---------------------------------------------------

def _envelope(part: Part) -> bytes:
    """Header values raw (encoded-words kept, folding removed), first occurrence of
    each field. Sender and Reply-To absent or empty default to From."""
    def text(name: str) -> bytes:
        value = part.get(name)
        return wire.NIL if value is None else wire.string(value)

    def addresses(name: str) -> bytes | None:
        value = part.get(name)
        if value is None:
            return None
        found = parse_addresses(value.decode("utf-8", "surrogateescape"))
        return b"(" + b"".join(_address(a) for a in found) + b")" if found else None

    sender_from = addresses("FROM")
    return wire.plist([
        text("DATE"), text("SUBJECT"),
        sender_from or wire.NIL,
        addresses("SENDER") or sender_from or wire.NIL,
        addresses("REPLY-TO") or sender_from or wire.NIL,
        addresses("TO") or wire.NIL, addresses("CC") or wire.NIL, addresses("BCC") or wire.NIL,
        text("IN-REPLY-TO"), text("MESSAGE-ID"),
    ])


def _address(a: Address) -> bytes:
    return wire.plist([_ns(a.name), _ns(a.adl), _ns(a.mailbox), _ns(a.host)])
