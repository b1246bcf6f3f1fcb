"""A message parsed into a tree of MIME parts: read by IMAP FETCH and SEARCH, and by the
attachment rules (attachments.py) at delivery. Pure and stdlib-only; byte offsets and
bytes.find make it some 50 times faster than the stdlib's line-by-line feed parser
(0.13 ms against 6 ms for a 500 KB message with a PDF), which matters on the MX's path.

Every part keeps byte offsets into the stored message, so BODY[...] answers are the
stored bytes, byte for byte, still transfer-encoded (RFC 3501 §6.4.5). Header values
are decoded (RFC 2047) only on demand, for SEARCH.

Implementation notes:
- Parsing never raises. Malformed MIME degrades the way Dovecot's does: a bad or
  missing Content-Type is text/plain (RFC 2045 §5.2), a multipart without a boundary
  is a text/plain leaf, a multipart whose boundary never appears gets one empty
  text/plain child (IMAP's body-type-mpart needs at least one part).
- Depth and part count are bounded (MAX_DEPTH, MAX_PARTS): a crafted message of
  thousands of nested parts must not cost more than a flat one. A container past the
  bounds is a text/plain leaf holding the rest of its bytes.
- A part body ends before the CRLF that precedes the next boundary line: that CRLF
  belongs to the boundary (RFC 2046 §5.1.1).
"""
from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_DEPTH = 50
MAX_PARTS = 10_000

_BLANK_LINE = re.compile(rb"\n\r?\n")
_IDENTITY_CTE = frozenset({"7bit", "8bit", "binary"})


class UnknownCte(Exception):
    """A Content-Transfer-Encoding we cannot decode for BINARY: the server answers
    NO [UNKNOWN-CTE] (RFC 3516 §4.3)."""

    def __init__(self, encoding: str) -> None:
        super().__init__(encoding)
        self.encoding = encoding


@dataclass(frozen=True, slots=True)
class Field:
    """One header field as stored: its lines, folding and line ends included."""

    name: str  # upper-cased, for matching (RFC 5322 §1.2.2: names are case-insensitive)
    raw: bytes

    @property
    def value(self) -> bytes:
        """What follows the colon, folded as stored."""
        return self.raw.partition(b":")[2] if b":" in self.raw else self.raw


@dataclass(frozen=True, slots=True)
class Address:
    """One RFC 3501 §7.4.2 address structure. A group start has host None and the
    group's name in mailbox; a group end is all None."""

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None


@dataclass(eq=False, slots=True)
class Part:
    """One MIME entity. Strings taken from headers are decoded with surrogateescape,
    so `to_bytes` gives back the stored bytes."""

    raw: bytes = field(repr=False)
    start: int
    body_start: int
    end: int
    fields: tuple[Field, ...] = ()
    type: str = "text"  # as written (case kept, as Dovecot reports it)
    subtype: str = "plain"
    params: tuple[tuple[str, str], ...] = ()
    id: str | None = None
    description: str | None = None
    encoding: str | None = None  # None: absent, i.e. 7bit (RFC 2045 §6.1)
    md5: str | None = None
    disposition: str | None = None
    disposition_params: tuple[tuple[str, str], ...] = ()
    language: tuple[str, ...] | None = None
    location: str | None = None
    lines: int | None = None  # text/* and message/rfc822 only
    children: tuple[Part, ...] = ()  # multipart
    message: Part | None = None  # message/rfc822: the enclosed message

    @property
    def header(self) -> bytes:
        """The header as stored, with the blank line that ends it."""
        return self.raw[self.start:self.body_start]

    @property
    def body(self) -> bytes:
        return self.raw[self.body_start:self.end]

    @property
    def size(self) -> int:
        return self.end - self.body_start

    @property
    def is_text(self) -> bool:
        return self.type.lower() == "text" and not self.children

    def headers(self) -> Headers:
        """This entity's header section, read as the policy rules read it."""
        return Headers(self.fields)

    def get(self, name: str) -> bytes | None:
        """The first field of that name, unfolded and stripped; None when absent."""
        upper = name.upper()
        for f in self.fields:
            if f.name == upper:
                return unfold(f.value)
        return None

    def param(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for n, v in self.params if n.lower() == lower), None)

    def walk(self) -> Iterator[Part]:
        """This part, then every part below it, enclosed messages included."""
        yield self
        for child in self.children:
            yield from child.walk()
        if self.message is not None:
            yield from self.message.walk()

    def decoded(self) -> bytes:
        """The body with its transfer encoding undone (RFC 2045 §6). Raises UnknownCte."""
        if self.encoding is not None and self.encoding.lower() == "base64":
            # read where it lies in the message: no copy of the encoded body first
            return _base64(self.raw, self.body_start, self.end)
        return decode_cte(self.body, self.encoding)

    def text(self) -> str:
        """The body as text, for SEARCH: decoded tolerantly, never raises."""
        try:
            data = self.decoded()
        except UnknownCte:
            data = self.body
        return decode_charset(data, self.param("charset"))


class Headers:
    """A header section as the policy rules read it (From, Subject, Message-ID...):
    built from the fields this module parsed (`Part.fields`), never by a second parser.
    It answers the read-only part of the stdlib `email.message.Message` the rules use
    (`get`, `get_all`, `raw_items`, `[]`), with the values compat32 gives: the text
    after the colon, leading blanks dropped, folding kept (RFC 5322 §2.2.3), 8-bit
    bytes as surrogate escapes in `raw_items` and as U+FFFD in `get` (a person's
    reading; the rules that need the bytes read `raw_items`)."""

    __slots__ = ("_items",)

    def __init__(self, fields: tuple[Field, ...]) -> None:
        items: list[tuple[str, str]] = []
        for f in fields:
            name, colon, value = f.raw.partition(b":")
            if not colon or not f.name:
                continue  # a line that is no field (RFC 5322 §2.2): read by nobody
            text = value.decode("ascii", "surrogateescape").lstrip(" \t").rstrip("\r\n")
            items.append((name.strip(b" \t").decode("ascii", "surrogateescape"), text))
        self._items = tuple(items)

    def __getstate__(self) -> tuple[tuple[str, str], ...]:
        return self._items

    def __setstate__(self, state: tuple[tuple[str, str], ...]) -> None:
        self._items = state

    def raw_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return [n for n, _ in self._items]

    def get_all(self, name: str, failobj: list[str] | None = None) -> list[str] | None:
        lower = name.lower()
        found = [_readable(v) for n, v in self._items if n.lower() == lower]
        return found or failobj

    def get(self, name: str, failobj: str | None = None) -> str | None:
        found = self.get_all(name)
        return found[0] if found else failobj

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self._items)


_SURROGATES = re.compile("[\udc80-\udcff]")


def _readable(value: str) -> str:
    return _SURROGATES.sub("\ufffd", value)


def parse(raw: bytes) -> Part:
    """The tree of a stored message (RFC 5322 + MIME). Never raises."""
    return _entity(raw, 0, len(raw), 0, [0], digest=False, in_multipart=False)


def find(root: Part, numbers: tuple[int, ...]) -> Part | None:
    """The part a section's part numbers name (RFC 3501 §6.4.5), None if there is none.

    A message (the root, or the one a message/rfc822 part encloses) numbers its parts
    from 1 when multipart; otherwise its only part, 1, is its own body. The numbers
    after a message/rfc822 part address the parts of the message it encloses.
    """
    node, in_message = root, True
    for n in numbers:
        if not in_message and node.message is not None:
            node, in_message = node.message, True
        if node.children:
            if not 1 <= n <= len(node.children):
                return None
            node, in_message = node.children[n - 1], False
        elif in_message and n == 1:
            in_message = False
        else:
            return None
    return node


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def unfold(value: bytes) -> bytes:
    """Folding removed the way Dovecot does for IMAP (line ends dropped, the
    whitespace that followed kept: RFC 5322 §2.2.3), then stripped."""
    return value.replace(b"\r", b"").replace(b"\n", b"").strip(b" \t")


# --- entity parsing ---------------------------------------------------------------

def _entity(raw: bytes, start: int, end: int, depth: int, count: list[int],
            digest: bool, in_multipart: bool) -> Part:
    count[0] += 1
    body_start = _header_end(raw, start, end)
    part = Part(raw, start, body_start, end, _fields(raw, start, body_start))
    if digest:  # RFC 2046 §5.1.5: a digest's parts default to message/rfc822
        part.type, part.subtype = "message", "rfc822"
    # Like Dovecot: Content-* fields count in a part of a multipart, or when the
    # entity says it is MIME (MIME-Version, or a Content-Type on its own).
    if in_multipart or any(f.name in ("MIME-VERSION", "CONTENT-TYPE") for f in part.fields):
        _read_content_fields(part)
    kind = f"{part.type}/{part.subtype}".lower()
    room = depth < MAX_DEPTH and count[0] < MAX_PARTS
    if part.type.lower() == "multipart":
        boundary = part.param("boundary")
        if not boundary or not room:
            _as_plain_text(part)
        else:
            spans = _split(raw, body_start, end, to_bytes(boundary), MAX_PARTS - count[0])
            sub_digest = part.subtype.lower() == "digest"
            part.children = tuple(
                _entity(raw, s, e, depth + 1, count, sub_digest, in_multipart=True)
                for s, e in spans) or (Part(raw, body_start, body_start, body_start, lines=0),)
    elif kind in ("message/rfc822", "message/global"):  # RFC 9051: message/global too
        # An encoded message/rfc822 is forbidden (RFC 2046 §5.2.1); its bytes are not a
        # message we could number parts in, so it is shown as text.
        if room and (part.encoding or "7bit").lower() in _IDENTITY_CTE:
            part.message = _entity(raw, body_start, end, depth + 1, count, False, False)
        else:
            _as_plain_text(part)
    if part.message is not None or part.is_text:
        part.lines = raw.count(b"\n", body_start, end)  # LF count, as Dovecot reports
    return part


def _as_plain_text(part: Part) -> None:
    part.type, part.subtype, part.params = "text", "plain", ()


def _header_end(raw: bytes, start: int, end: int) -> int:
    """Where the body starts: after the first empty line; no empty line, no body."""
    if raw.startswith(b"\r\n", start, end):
        return start + 2
    if raw.startswith(b"\n", start, end):
        return start + 1
    m = _BLANK_LINE.search(raw, start, end)
    return m.end() if m else end


def _fields(raw: bytes, start: int, stop: int) -> tuple[Field, ...]:
    groups: list[list[bytes]] = []
    pos = start
    while pos < stop:
        nl = raw.find(b"\n", pos, stop)
        nxt = stop if nl < 0 else nl + 1
        line = raw[pos:nxt]
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and groups:  # folded (RFC 5322 §2.2.3)
            groups[-1].append(line)
        else:
            groups.append([line])
        pos = nxt
    out = []
    for lines in groups:
        data = b"".join(lines)
        name = data.partition(b":")[0].strip().decode("latin-1").upper() if b":" in data else ""
        out.append(Field(name, data))
    return tuple(out)


def _split(raw: bytes, start: int, end: int, boundary: bytes, budget: int) -> list[tuple[int, int]]:
    """Spans of the parts between boundary lines (RFC 2046 §5.1.1). A missing close
    delimiter ends the last part at the end of the body; past the part budget, the
    last part kept runs to the end of the last part."""
    delimiter = b"--" + boundary
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    pos = start
    while True:
        i = raw.find(delimiter, pos, end)
        if i < 0:
            break
        pos = i + 1
        if i != start and raw[i - 1] != 0x0A:  # a delimiter starts a line
            continue
        j = i + len(delimiter)
        closing = raw.startswith(b"--", j, end)
        k = j + 2 if closing else j
        while k < end and raw[k] in b" \t":  # transport padding
            k += 1
        if k < end and raw[k] not in b"\r\n":
            continue  # a longer line, e.g. a boundary this one is a prefix of
        line_end = k + 2 if raw.startswith(b"\r\n", k, end) else min(k + 1, end)
        if part_start is not None:
            stop = i
            if stop > part_start and raw[stop - 1] == 0x0A:
                stop -= 1
                if stop > part_start and raw[stop - 1] == 0x0D:
                    stop -= 1
            spans.append((part_start, stop))
        if closing:
            part_start = None
            break
        part_start = pos = line_end
    if part_start is not None:
        spans.append((part_start, end))
    if budget < 1:
        return []
    if len(spans) > budget:
        spans = spans[:budget - 1] + [(spans[budget - 1][0], spans[-1][1])]
    return spans


def _read_content_fields(part: Part) -> None:
    """The MIME fields (RFC 2045, RFC 2183, RFC 3066, RFC 2557, RFC 1864), first
    occurrence of each, as Dovecot does."""
    seen: set[str] = set()
    for f in part.fields:
        if not f.name.startswith("CONTENT-") or f.name in seen:
            continue
        seen.add(f.name)
        value = unfold(f.value).decode("utf-8", "surrogateescape")
        if f.name == "CONTENT-TYPE":
            head, params = _parse_params(value)
            mtype, slash, subtype = head.partition("/")
            if slash and mtype.strip() and subtype.strip():
                part.type, part.subtype, part.params = mtype.strip(), subtype.strip(), params
            else:  # RFC 2045 §5.2: an invalid Content-Type means text/plain us-ascii
                _as_plain_text(part)
        elif f.name == "CONTENT-TRANSFER-ENCODING":
            token = _strip_comments(value).split()
            part.encoding = token[0] if token else None
        elif f.name == "CONTENT-DISPOSITION":
            head, params = _parse_params(value)
            if head:
                part.disposition, part.disposition_params = head, params
        elif f.name == "CONTENT-LANGUAGE":
            tags = tuple(t.strip() for t in _strip_comments(value).split(",") if t.strip())
            part.language = tags or None
        elif f.name == "CONTENT-ID":
            part.id = value
        elif f.name == "CONTENT-DESCRIPTION":
            part.description = value
        elif f.name == "CONTENT-MD5":
            part.md5 = value
        elif f.name == "CONTENT-LOCATION":
            part.location = value


# --- structured field values -----------------------------------------------------

_SEGMENT = re.compile(r"^(.*?)\*(\d+)(\*?)$")


def _parse_params(value: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """'type/sub; a=b; c="d e"' -> ('type/sub', (('a', 'b'), ('c', 'd e'))). Names keep
    their case; RFC 2231 continuations are joined, an extended value keeps its
    charset'lang' prefix and a name ending in '*', as Dovecot reports it."""
    pieces = _split_params(value)
    params: list[tuple[str, str]] = []
    for piece in pieces[1:]:
        name, eq, val = piece.partition("=")
        name = name.strip()
        if eq and name:
            params.append((name, _unquote(val.strip())))
    return pieces[0].strip(), _join_continuations(params)


def _split_params(text: str) -> list[str]:
    """Split on ';' outside quoted strings, dropping comments (RFC 5322 §3.2.2)."""
    pieces: list[str] = []
    cur: list[str] = []
    depth, quoted, i = 0, False, 0
    while i < len(text):
        c = text[i]
        if quoted:
            cur.append(c)
            if c == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == '"':
                quoted = False
        elif depth:
            if c == "\\":
                i += 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
        elif c == '"':
            quoted = True
            cur.append(c)
        elif c == "(":
            depth = 1
        elif c == ";":
            pieces.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    pieces.append("".join(cur))
    return pieces


def _strip_comments(text: str) -> str:
    return ";".join(_split_params(text))


def _unquote(value: str) -> str:
    if not value.startswith('"'):
        return value
    out: list[str] = []
    i = 1
    while i < len(value) and value[i] != '"':
        if value[i] == "\\" and i + 1 < len(value):
            i += 1
        out.append(value[i])
        i += 1
    return "".join(out)


def _join_continuations(params: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """RFC 2231 §3-4: name*0, name*1... joined into one value, at the first one's place."""
    out: list[list[str]] = []
    groups: dict[str, tuple[list[str], dict[int, tuple[str, bool]]]] = {}
    for name, value in params:
        m = _SEGMENT.match(name)
        if m is None:
            out.append([name, value])
            continue
        key = m.group(1).lower()
        if key not in groups:
            groups[key] = ([m.group(1), ""], {})
            out.append(groups[key][0])
        groups[key][1].setdefault(int(m.group(2)), (value, m.group(3) == "*"))
    for entry, segments in groups.values():
        ordered = sorted(segments.items())
        entry[1] = "".join(v for _, (v, _) in ordered)
        if ordered[0][1][1]:
            entry[0] += "*"
    return tuple((n, v) for n, v in out)


def parse_addresses(value: str) -> list[Address]:
    """An RFC 5322 §3.4 address list, as IMAP address structures (RFC 3501 §7.4.2),
    tolerantly. Names are kept raw (encoded-words not decoded). Like Dovecot, a missing
    local part or domain reads MISSING_MAILBOX / MISSING_DOMAIN, since a NIL host
    would mean a group; with no display name, a trailing comment is the name."""
    toks = _address_tokens(value)
    out: list[Address] = []
    in_group = False
    i = 0
    while i < len(toks):
        kind = toks[i][0]
        if kind == ",":
            i += 1
            continue
        if kind == ";":
            if in_group:
                out.append(Address(None, None, None, None))
                in_group = False
            i += 1
            continue
        words: list[str] = []
        comment: str | None = None
        j = i
        while j < len(toks) and toks[j][0] in ("atom", "qs", "dlit", "comment"):
            if toks[j][0] == "comment":
                comment = toks[j][1]
            else:
                words.append(toks[j][1])
            j += 1
        nxt = toks[j][0] if j < len(toks) else None
        if nxt == ":" and not in_group:
            out.append(Address(None, None, " ".join(words), None))
            in_group = True
            i = j + 1
            continue
        if nxt == "<":
            k = j + 1
            while k < len(toks) and toks[k][0] != ">":
                k += 1
            adl, local, domain = _angle_addr(toks[j + 1:k])
            j = k + 1
            while j < len(toks) and toks[j][0] == "comment":
                comment = comment or toks[j][1]
                j += 1
            name = " ".join(words) or comment
        elif nxt == "@":
            k = j + 1
            domain_words: list[str] = []
            while k < len(toks) and toks[k][0] not in (",", ";", "<", ">", ":"):
                if toks[k][0] == "comment":
                    comment = toks[k][1]
                elif toks[k][0] != "@":
                    domain_words.append(toks[k][1])
                k += 1
            adl, local, domain, name, j = None, "".join(words), "".join(domain_words), comment, k
        elif words:
            adl, local, domain, name = None, "".join(words), None, comment
        else:
            i = j + 1 if nxt in (":", ">", "@") else j
            continue
        out.append(Address(name or None, adl, local or "MISSING_MAILBOX", domain or "MISSING_DOMAIN"))
        i = j + 1 if j < len(toks) and toks[j][0] in (":", ">") else j
    if in_group:
        out.append(Address(None, None, None, None))
    return out


def _angle_addr(toks: list[tuple[str, str]]) -> tuple[str | None, str, str | None]:
    """'<@route,@route:local@domain>' -> (adl, local, domain) (RFC 5322 §4.4 obs-route)."""
    toks = [t for t in toks if t[0] != "comment"]
    adl = None
    if toks and toks[0][0] == "@" and any(t[0] == ":" for t in toks):
        colon = next(n for n, t in enumerate(toks) if t[0] == ":")
        adl = "".join(t[1] for t in toks[:colon])
        toks = toks[colon + 1:]
    at = max((n for n, t in enumerate(toks) if t[0] == "@"), default=-1)
    if at < 0:
        return adl, "".join(t[1] for t in toks), None
    return adl, "".join(t[1] for t in toks[:at]), "".join(t[1] for t in toks[at + 1:])


def _address_tokens(text: str) -> list[tuple[str, str]]:
    toks: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            toks.append(("qs", "".join(buf)))
            i = j + 1
        elif c == "(":
            j, depth, buf = i + 1, 1, []
            while j < n and depth:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                elif text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                if depth:
                    buf.append(text[j])
                j += 1
            toks.append(("comment", "".join(buf).strip()))
            i = j
        elif c == "[":
            j = text.find("]", i)
            j = n if j < 0 else j + 1
            toks.append(("dlit", text[i:j]))
            i = j
        elif c in "<>@,;:":
            toks.append((c, c))
            i += 1
        elif c == ")":
            i += 1  # a ")" that closes no comment: dropped (as an atom it would be empty, and loop)
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n"()<>@,;:[':
                j += 1
            toks.append(("atom", text[i:j]))
            i = j
    return toks


# --- decoding (SEARCH, BINARY) ---------------------------------------------------

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_QP_TRAILING_SPACE = re.compile(rb"[ \t]+(?=\r?\n|\Z)")
_QP_SOFT_BREAK = re.compile(rb"=(?:\r?\n|\Z)")


def decode_cte(data: bytes, encoding: str | None) -> bytes:
    enc = (encoding or "7bit").lower()
    if enc in _IDENTITY_CTE:
        return data
    if enc == "base64":
        return _base64(data)
    if enc == "quoted-printable":
        return decode_qp(data)
    raise UnknownCte(encoding or "")


def decode_qp(data: bytes) -> bytes:
    """Quoted-printable (RFC 2045 §6.7): whitespace at the end of a line was added in
    transport and goes (rule 3); "=" ending a line, even followed by such whitespace,
    is a soft line break (rule 5); then =XX octets (binascii, at C speed, which keeps a
    "=" that starts no valid pair as it is, as the RFC advises)."""
    return binascii.a2b_qp(_QP_SOFT_BREAK.sub(b"", _QP_TRAILING_SPACE.sub(b"", data)))


# binascii decodes about 220 MB/s: 3 ms of a held GIL for a 500 KB attachment, the largest
# cost of a webmail download under bench/web_load.py. pybase64 (SIMD, a dependency of the
# daemon) is a drop-in for the lenient decode, 6x faster; policy/ stays runnable on the
# standard library alone, so it is optional here.
try:
    from pybase64 import b64decode as _fast_b64decode

    def _a2b_base64(data: bytes) -> bytes:
        return _fast_b64decode(data)
except ImportError:  # pragma: no cover - the daemon installs it
    _a2b_base64 = binascii.a2b_base64


def _base64(data: bytes, start: int = 0, end: int | None = None) -> bytes:
    """data[start:end] decoded, read in place (a view, not a copy of the slice)."""
    # RFC 2045 §6.8: characters outside the alphabet are ignored, and a "=" means the
    # end of the data has been reached. A truncated last quantum is dropped.
    # binascii's lenient mode does exactly that for well-formed data, at C speed (the
    # regex below costs 3 ms for a 500 KB attachment); only its padding errors differ.
    stop = len(data) if end is None else end
    first = data.find(b"=", start, stop)
    # no "=" inside the data, only in the padding at its end: same semantics
    if first < 0 or not data[first:stop].strip(b"=\r\n \t"):
        try:
            return _a2b_base64(memoryview(data)[start:stop])
        except (binascii.Error, ValueError):
            pass
    clean = _NOT_BASE64.sub(b"", data[start:stop].split(b"=", 1)[0])
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))


def decode_charset(data: bytes, charset: str | None) -> str:
    """Text in its declared charset; undeclared, us-ascii or unknown charsets are read
    as UTF-8, else Windows-1252 (8-bit text mislabelled us-ascii is common)."""
    if charset and charset.strip().lower() not in ("us-ascii", "ascii", "utf-8", "utf8"):
        try:
            return data.decode(charset.strip(), "replace")
        except (LookupError, UnicodeError, ValueError):
            # an unknown or non-text codec ("rot13", "base64"), or one that refuses
            # "replace" (idna, punycode): read the text as undeclared
            charset = None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def decode_header(value: bytes) -> str:
    """A header value as text: unfolded, RFC 2047 encoded-words decoded, whitespace
    between two adjacent encoded-words dropped (RFC 2047 §6.2). Never raises."""
    return decode_words(decode_charset(unfold(value), None))


def decode_words(text: str) -> str:
    """The RFC 2047 decoder of the whole code base (IMAP SEARCH and SORT, the webmail,
    the [FIN] rule through policy.conversation.decode_subject): one subject is read
    one way everywhere. Encoded-words in their charset (unknown or undecodable: as
    undeclared text, UTF-8 else Windows-1252), an unreadable word kept as written,
    whitespace between adjacent words dropped (§6.2). Never raises."""
    out: list[str] = []
    pos = 0
    for m in _ENCODED_WORD.finditer(text):
        gap = text[pos:m.start()]
        if pos == 0 or gap.strip():
            out.append(gap)
        out.append(_decode_word(m))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def _decode_word(m: re.Match[str]) -> str:
    charset = m.group(1).split("*", 1)[0]  # RFC 2231 §5: charset*language
    data = m.group(3).encode("utf-8")
    if m.group(2) in "Qq":  # RFC 2047 §4.2: "_" is a space, "=XX" a byte; a bad "=ZZ" stays
        return decode_charset(binascii.a2b_qp(data, header=True), charset)
    # RFC 2047 §4.1: a missing padding is tolerated, as most readers do; a character
    # outside the alphabet makes the whole word unreadable (U+FFFD), never silently
    # shorter (a body's base64 is read leniently, RFC 2045 §6.8: not a header's)
    cleaned = data.rstrip(b"=")
    try:
        raw = base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return "\ufffd"
    return decode_charset(raw, charset)
