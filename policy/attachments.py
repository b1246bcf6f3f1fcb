"""Attachment rules (DESIGN.md §4 "Size and attachments"): every MIME part classified by
its real content, checked against the allow-list, with bounded sizes and zip packages.

Pure decisions, no I/O: `mime_parts` turns a raw message into its leaf parts,
`classify` decides one part, `check_message` decides them all, `check_package` decides
the files of an IHE_XDM package with the same `classify`. The allow-list:

    PDF, JPEG, PNG, TIFF, plain text, RTF, Word (.doc OLE2 or .docx OOXML),
    CDA R2 XML (root `{urn:hl7-org:v3}ClinicalDocument`), IHE XDM zip packages.

Not attachments (never refused here): the message text itself (a text/* leaf with no file
name whose disposition is not "attachment"), the machine parts of bounces and read
receipts (RFC 3464, RFC 8098, RFC 6522 text/rfc822-headers) without a file name, and a
detached S/MIME signature (RFC 8551 §3.5.3).

Refusals, by `Decision.rule` (metrics and logs):

- `mime_structure`    554 5.6.0  MIME nesting over `max_depth`, more than `max_parts`
                                 leaves, or a structure the parser cannot walk. 5.6.0
                                 ("other media error", RFC 3463) rather than 5.6.1: no
                                 media type is at fault, the shape of the message is.
- `attachment_too_big` 552 5.3.4 one part over `max_part_bytes`, or all attachments
                                 together over `max_total_bytes`.
- `attachment_forbidden` 554 5.6.1 real content not on the allow-list (executable, script,
                                 HTML, other XML, other zip, Word with macros...) or a
                                 file name extension that is not on it (".exe", ".js");
                                 inside an IHE_XDM package, also an INDEX.HTM that is
                                 not inert and a nested IHE_XDM package. An entry is
                                 named "<package>/<entry path>".
- `attachment_mismatch` 554 5.6.1 the declared Content-Type or the file name extension
                                 does not fit the real content (a PNG declared
                                 application/pdf, a PDF named .png).
- `attachment_zip`     554 5.6.1 a zip (XDM or docx) whose central directory breaks a
                                 bound or a safety rule (entries, unpacked size, ratio,
                                 encryption, method, unsafe names, symlinks).

Implementation notes:
- Nothing here may raise, whatever the bytes: the MX calls this on hostile input. The
  stdlib parsers (email, zipfile, expat) are fenced with `except Exception` where they
  read untrusted bytes, and a failure becomes a refusal, never an acceptance.
- The allow-list is decided by our own signature table (`_SIGNATURES`), never by
  puremagic: a data-file update of a dependency must not widen what a patient
  receives. puremagic only *names* what a refused part is, so the sender reads
  "executable Windows" rather than "unknown".
- Reply texts are printable US-ASCII (RFC 5321 §4.2), French first, and name the part by
  a sanitised file name (at most 80 characters) or its IMAP part number (RFC 9051 §6.4.5),
  so the reply line stays under 512 octets (RFC 5321 §4.5.3.1.5).
- Zip checks read the central directory only. Its sizes can lie; the real decompression
  (dossier_bridge/xdm.py) enforces the same limits again while streaming.
"""
from __future__ import annotations

import enum
import io
import re
import struct
import urllib.parse
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import NamedTuple
from xml.parsers import expat

# The one non-stdlib import of `policy`: puremagic is pure Python (no libmagic, no I/O on
# bytes input) and knows ~1400 signatures. It is used only to say what a refused part
# is; it never decides that a part is accepted.
import puremagic

from policy import mime, zipsafety
from policy.decisions import Decision

__all__ = [
    "MIB",
    "PATIENT_MAX_PART_BYTES",
    "Attachment",
    "AttachmentLimits",
    "Kind",
    "PackageEntry",
    "Part",
    "check_message",
    "check_package",
    "check_zip",
    "classify",
    "mime_parts",
    "sniff",
]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    """Bounds on what a message may carry (relay.toml [attachments]; DESIGN.md §6
    "Bounded everything")."""

    max_part_bytes: int = 25 * MIB  # one attachment, decoded; patients' own: 5 MB
    max_total_bytes: int = 25 * MIB  # all attachments of one message, decoded
    max_parts: int = 100  # MIME leaf parts in one message
    max_depth: int = 10  # MIME nesting (multipart, message/rfc822)
    zip_max_entries: int = 100  # files in one zip (IHE_XDM.ZIP, .docx)
    zip_max_unpacked_bytes: int = 100 * MIB  # sum of the unpacked sizes of one zip
    zip_max_ratio: int = 100  # unpacked / packed size of any one entry


PATIENT_MAX_PART_BYTES = 5 * MIB  # DESIGN.md §4: a patient's own attachments

_DEFAULT_LIMITS = AttachmentLimits()


# --- What a part may be ----------------------------------------------------------------

_DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


class Kind(enum.Enum):
    """An allowed kind of attachment; the value is its canonical MIME type."""

    PDF = "application/pdf"
    JPEG = "image/jpeg"
    PNG = "image/png"
    TIFF = "image/tiff"
    TEXT = "text/plain"
    RTF = "application/rtf"
    WORD = "application/msword"  # OLE2 compound file with a WordDocument stream (.doc)
    DOCX = _DOCX_TYPE  # OOXML WordprocessingML package (ECMA-376)
    # text/xml, not application/hl7-cda+xml (never registered with IANA): it is the
    # mimeType the ANS CI-SIS and the DMP give CDA R2 documents in XDS metadata, and what
    # professional software sends.
    CDA = "text/xml"
    XDM = "application/zip"  # IHE ITI TF-1 §16 package (IHE_XDM.ZIP)

    @property
    def mime_type(self) -> str:
        return self.value


# What a sender may declare for each kind (RFC 2045 §5). Aliases are those real mailers
# send. Word and docx accept each other's type and extension: a .docx saved as "x.doc"
# opens in the same program, refusing it would only bounce real letters.
_DECLARED: dict[Kind, frozenset[str]] = {
    Kind.PDF: frozenset({"application/pdf", "application/x-pdf"}),
    Kind.JPEG: frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    Kind.PNG: frozenset({"image/png", "image/x-png"}),
    Kind.TIFF: frozenset({"image/tiff", "image/x-tiff"}),
    Kind.TEXT: frozenset({"text/plain"}),
    Kind.RTF: frozenset({"application/rtf", "text/rtf", "application/x-rtf"}),
    Kind.WORD: frozenset({"application/msword", _DOCX_TYPE}),
    Kind.DOCX: frozenset({_DOCX_TYPE, "application/msword"}),
    Kind.CDA: frozenset({"text/xml", "application/xml", "application/hl7-cda+xml", "application/hl7-v3+xml"}),
    Kind.XDM: frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"}),
}
# A type that says nothing about the content (RFC 2046 §4.5.1), or no type at all.
_DECLARES_NOTHING = frozenset({"", "application/octet-stream"})

_EXTENSIONS: dict[Kind, frozenset[str]] = {
    Kind.PDF: frozenset({"pdf"}),
    Kind.JPEG: frozenset({"jpg", "jpeg", "jpe"}),
    Kind.PNG: frozenset({"png"}),
    Kind.TIFF: frozenset({"tif", "tiff"}),
    Kind.TEXT: frozenset({"txt", "text"}),
    Kind.RTF: frozenset({"rtf"}),
    Kind.WORD: frozenset({"doc", "docx"}),
    Kind.DOCX: frozenset({"docx", "doc"}),
    Kind.CDA: frozenset({"xml"}),
    Kind.XDM: frozenset({"zip"}),
}
_KNOWN_EXTENSIONS = frozenset().union(*_EXTENSIONS.values())

# How a kind is named in a reply (French, English).
_LABELS: dict[Kind, tuple[str, str]] = {
    Kind.PDF: ("PDF", "PDF"),
    Kind.JPEG: ("JPEG", "JPEG"),
    Kind.PNG: ("PNG", "PNG"),
    Kind.TIFF: ("TIFF", "TIFF"),
    Kind.TEXT: ("texte", "text"),
    Kind.RTF: ("RTF", "RTF"),
    Kind.WORD: ("Word (.doc)", "Word (.doc)"),
    Kind.DOCX: ("Word (.docx)", "Word (.docx)"),
    Kind.CDA: ("CDA", "CDA"),
    Kind.XDM: ("IHE XDM", "IHE XDM"),
}

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# The allow-list by magic bytes at offset 0, vetted by hand. `None` marks OLE2, which is
# Word only with a WordDocument stream (`_ole2_kind`).
_SIGNATURES: tuple[tuple[bytes, Kind | None], ...] = (
    (b"%PDF-", Kind.PDF),  # ISO 32000-1 §7.5.2
    (b"\xff\xd8\xff", Kind.JPEG),  # SOI then any marker (JFIF, Exif, raw)
    (b"\x89PNG\r\n\x1a\n", Kind.PNG),  # PNG §5.2
    (b"II*\x00", Kind.TIFF),  # TIFF 6.0 §2, little-endian
    (b"MM\x00*", Kind.TIFF),  # big-endian
    (b"{\\rtf1", Kind.RTF),
    (_OLE2, None),
)
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")  # APPNOTE §4.3.7, 4.3.16, 8.5.3

_HL7_V3 = "urn:hl7-org:v3"
_CDA_ROOT = f"{_HL7_V3} ClinicalDocument"  # expat's name with namespace_separator=" "

# Not attachments, when they carry no file name: the machine-readable parts of a DSN
# (RFC 3464 §2), an MDN (RFC 8098 §3) and the returned headers (RFC 6522 §4), and their
# UTF-8 forms (RFC 6533). Patients' bounces and read receipts must pass.
_REPORT_TYPES = frozenset({
    "message/delivery-status", "message/disposition-notification", "text/rfc822-headers",
    "message/global-delivery-status", "message/global-disposition-notification", "message/global-headers",
})
_SMIME_SIGNATURES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
_SMIME_SIGNATURE_MAX = 64 * 1024  # a CMS SignedData with a few certificates is a few KiB
_ENCAPSULATED = frozenset({"message/rfc822", "message/global"})  # RFC 2046 §5.2.1, RFC 6532 §3.7

_NAME_MAX = 80  # characters of a part's name quoted in a reply
_DETAIL_MAX = 60  # characters of a found type, declared type or root element quoted


@dataclass(frozen=True, slots=True)
class Part:
    """One leaf of the MIME tree."""

    path: str  # IMAP part number (RFC 9051 §6.4.5), e.g. "2" or "2.1": for logs and replies
    filename: str | None  # decoded (RFC 2231, RFC 2047), None when absent
    content_type: str  # as declared, lower-case, no parameters; "" when absent or invalid
    disposition: str | None  # "attachment", "inline" or None (RFC 2183)
    content: bytes = field(repr=False)  # transfer-decoded; never in a repr (health content)
    depth: int
    # where the encoded body lies in the message (byte offsets, end excluded) and its
    # transfer encoding: `content` is decode_cte(message[span[0]:span[1]], encoding)
    span: tuple[int, int] | None = None
    encoding: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A part accepted as an attachment, with its real kind."""

    part: Part
    kind: Kind

    @property
    def mime_type(self) -> str:
        return self.kind.mime_type


class _Refusal(NamedTuple):
    """Why a part is refused, before it is turned into a Decision naming it."""

    rule: str
    fr: str
    en: str


# --- Reply texts -------------------------------------------------------------------------


def _ascii(text: str, limit: int) -> str:
    """Printable US-ASCII (RFC 5321 §4.2), others as "?", cut at `limit` characters: the
    text goes into an SMTP reply line, so no CR/LF either."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text[:limit + 1])
    return safe if len(safe) <= limit else safe[:limit - 3] + "..."


def _names(part: Part) -> tuple[str, str]:
    """How a reply names the part: its file name, else its MIME part number."""
    if part.filename and part.filename.strip():
        name = _ascii(part.filename.strip(), _NAME_MAX)
        return name, name
    path = _ascii(part.path, _NAME_MAX - 7)
    return f"partie {path}", f"part {path}"


def _size(n: int) -> tuple[str, str]:
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} Mo", f"{n // MIB} MB"
    return f"{n} octets", f"{n} bytes"


def _refuse(why: _Refusal, part: Part) -> Decision:
    fr_name, en_name = _names(part)
    # Parts are sanitised and bounded so the reply line stays far under 512 octets; the
    # outer _ascii is a guard for future labels.
    return Decision(554, "5.6.1", _ascii(f"Piece jointe refusee ({why.fr}): {fr_name}", 250),
                    _ascii(f"Attachment refused ({why.en}): {en_name}", 250), why.rule)


def refuse_part(part: Part, rule: str, fr: str, en: str) -> Decision:
    """`554 5.6.1` naming the part, for a refusal decided after classification (an
    IHE_XDM package whose content turns out unreadable while it is unpacked)."""
    return _refuse(_Refusal(rule, _ascii(fr, _DETAIL_MAX), _ascii(en, _DETAIL_MAX)), part)


def _too_big(part: Part, limit: int) -> Decision:
    fr_name, en_name = _names(part)
    fr_size, en_size = _size(limit)
    return Decision(552, "5.3.4", f"Piece jointe trop volumineuse ({fr_size} au plus): {fr_name}",
                    f"Attachment too big ({en_size} at most): {en_name}", "attachment_too_big")


def _mime_refusal(fr: str, en: str) -> Decision:
    return Decision(554, "5.6.0", fr, en, "mime_structure")


def _forbidden(fr: str, en: str) -> _Refusal:
    return _Refusal("attachment_forbidden", f"type non autorise: {fr}", f"type not allowed: {en}")


def _zip_refusal(fr: str, en: str) -> _Refusal:
    return _Refusal("attachment_zip", f"zip: {fr}", f"zip: {en}")


# --- MIME structure ------------------------------------------------------------------------


def _field_type(node: mime.Part) -> str | None:
    """The Content-Type the part declares, lower-case, without parameters; None when it
    declares none or an invalid one (RFC 2045 §5.2: then it is text/plain)."""
    value = node.get("Content-Type")
    if value is None:
        return None
    declared = value.decode("utf-8", "replace").split(";", 1)[0].strip().lower()
    return declared if declared.count("/") == 1 and all(declared.split("/")) else None


def _disposition(node: mime.Part) -> str | None:
    value = (node.disposition or "").strip().lower() or None
    if value is None or value == "inline":
        return value
    return "attachment"  # RFC 2183 §2.8: an unknown disposition is treated as attachment


def _unescape(text: str) -> str:
    """A header value the parser kept with surrogate escapes: RFC 6532 raw UTF-8, or an
    old mailer's latin-1."""
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _param(params: tuple[tuple[str, str], ...], name: str) -> str | None:
    """A parameter, RFC 2231 encoded (name*=charset'lang'value) or not."""
    for key, value in params:
        k = key.lower()
        if k == name + "*":  # RFC 2231 §4: charset'language'percent-encoded
            charset, _, rest = value.partition("'")
            _, _, encoded = rest.partition("'")
            data = urllib.parse.unquote_to_bytes(encoded if rest else value)
            try:
                return data.decode(charset or "us-ascii")
            except (LookupError, UnicodeError):
                return data.decode("latin-1")
        if k == name:
            return _unescape(value)
    return None


def _decode_filename(node: mime.Part) -> str | None:
    # Content-Disposition filename (RFC 2183 §2.3), else the legacy Content-Type name
    name = _param(node.disposition_params, "filename") or _param(node.params, "name")
    if not name:
        return None
    if "=?" in name:
        # RFC 2047 §5 forbids encoded-words in a parameter, yet many mailers send them.
        name = mime.decode_header(name.encode("utf-8", "surrogateescape"))
    return name.strip() or None


def mime_parts(raw: bytes | mime.Part, limits: AttachmentLimits) -> list[Part] | Decision:
    """The leaf parts of an RFC 5322 message, in order, or a `mime_structure` refusal.

    Recurses into multipart/* (RFC 2046 §5.1) and message/rfc822 (§5.2.1); any other
    message/* (delivery-status, partial, external-body...) is a leaf. The top message is
    at depth 0, each multipart or encapsulated message adds one. Parsed by policy/mime.py
    (bounded, never raises), which reads a broken structure the tolerant way a mail
    reader does; here anything it had to reinterpret is refused instead, since a reader
    might see in it parts we never checked. `raw` may be the message's tree, parsed
    once (policy/parsed.py), so nothing parses it again.
    """
    try:
        return _walk(raw if isinstance(raw, mime.Part) else mime.parse(raw), limits)
    except Exception:  # never crash a session on hostile bytes
        return _mime_refusal("Structure MIME illisible", "Unreadable MIME structure")


def _walk(root: mime.Part, limits: AttachmentLimits) -> list[Part] | Decision:
    too_deep = _mime_refusal(f"Structure MIME trop profonde ({limits.max_depth} niveaux au plus)",
                             f"MIME structure too deep ({limits.max_depth} levels at most)")
    too_many = _mime_refusal(f"Trop de parties MIME ({limits.max_parts} au plus)",
                             f"Too many MIME parts ({limits.max_parts} at most)")
    leaves: list[Part] = []
    # (node, IMAP number, depth, is a message): an explicit stack, no recursion.
    stack: list[tuple[mime.Part, str, int, bool]] = [(root, "", 0, True)]
    while stack:
        node, number, depth, is_message = stack.pop()
        if depth > limits.max_depth:
            return too_deep
        ctype = f"{node.type}/{node.subtype}".lower()
        declared = _field_type(node)
        if declared is not None and declared != ctype:
            # the parser had to read the part as text: a multipart without (or with an
            # unusable) boundary, an encoded message/rfc822 (RFC 2046 §5.2.1), or bounds
            return _mime_refusal("Structure MIME invalide (partie illisible telle que declaree)",
                                 "Invalid MIME structure (a part cannot be read as declared)")
        if node.children:
            prefix = f"{number}." if number else ""
            for i in range(len(node.children), 0, -1):
                stack.append((node.children[i - 1], f"{prefix}{i}", depth + 1, False))
        elif node.message is not None:
            # RFC 9051 §6.4.5: the parts of an encapsulated message are numbered under it.
            stack.append((node.message, number, depth + 1, True))
        else:
            if len(leaves) >= limits.max_parts:
                return too_many
            try:
                content = node.decoded()  # RFC 2045 §6: base64, quoted-printable
            except mime.UnknownCte:
                return _mime_refusal("Encodage de transfert inconnu", "Unknown transfer encoding")
            # a non-multipart message's own body is its part "1" (RFC 9051 §6.4.5)
            path = (f"{number}.1" if number else "1") if is_message else number
            leaves.append(Part(path, _decode_filename(node), declared or "", _disposition(node), content, depth,
                               (node.body_start, node.end), (node.encoding or "7bit").lower()))
    return leaves


# --- Content sniffing ------------------------------------------------------------------------


_OLE2_ENTRY = 128  # [MS-CFB] §2.6: directory entries are 128 bytes, sectors 512 or 4096


def _ole2_has(content: bytes, name: str, object_type: int) -> bool:
    """Whether an OLE2 compound file has a directory entry `name` of `object_type`
    (1 storage, 2 stream), [MS-CFB] §2.6.1.

    A scan, not a FAT walk: directory sectors start at multiples of 512, so entries sit
    at multiples of 128; an entry is its UTF-16LE name, then its byte length (with the
    terminating NUL) and type.
    """
    encoded = name.encode("utf-16-le") + b"\x00\x00"
    pos = content.find(encoded)
    while pos >= 0:
        if pos % _OLE2_ENTRY == 0 and pos + 67 <= len(content):
            length, kind = struct.unpack_from("<HB", content, pos + 64)
            if length == len(encoded) and kind == object_type:
                return True
        pos = content.find(encoded, pos + 1)
    return False


def _ole2_kind(content: bytes) -> Kind | _Refusal:
    # OLE2 is a container: Excel, PowerPoint and Windows Installer (.msi) files are OLE2
    # too. Only a WordDocument stream ([MS-DOC] §2.1.1) makes a .doc.
    if not _ole2_has(content, "WordDocument", 2):
        return _forbidden("document OLE2 autre que Word (Excel, PowerPoint, MSI...)",
                          "OLE2 document other than Word (Excel, PowerPoint, MSI...)")
    if _ole2_has(content, "Macros", 1) or _ole2_has(content, "VBA", 1):  # [MS-OVBA] §2.2
        return _forbidden("document Word avec macros", "Word document with macros")
    return Kind.WORD


class _XmlStop(Exception):
    def __init__(self, what: str, name: str) -> None:
        super().__init__(what)
        self.what = what
        self.name = name


_XML_CHUNK = 64 * 1024


def _xml_root(content: bytes) -> tuple[str, str]:
    """("root", name) for the first element (namespace URI, space, local name),
    ("doctype", name) when a DTD comes first, ("error", "") when not well-formed.

    Stops at the first start element: a DOCTYPE can only come before it (XML 1.0 §2.8),
    so no entity is ever declared, let alone expanded (no XXE, no billion laughs).
    """
    parser = expat.ParserCreate(namespace_separator=" ")

    def start(name: str, attrs: object) -> None:
        raise _XmlStop("root", name)

    def doctype(name: str, *_: object) -> None:
        raise _XmlStop("doctype", name or "")

    def entity(name: str, *_: object) -> None:
        raise _XmlStop("doctype", "")

    parser.StartElementHandler = start
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        for i in range(0, len(content), _XML_CHUNK):
            parser.Parse(content[i:i + _XML_CHUNK], False)
        parser.Parse(b"", True)
    except _XmlStop as stop:
        return stop.what, stop.name
    except Exception:  # ExpatError, or a codec error on a declared encoding
        return "error", ""
    return "error", ""  # no element at all


def _markup_kind(content: bytes) -> Kind | _Refusal:
    what, name = _xml_root(content)
    local = name.rsplit(" ", 1)[-1]
    if what == "root" and name == _CDA_ROOT:
        return Kind.CDA
    if local.lower() == "html":
        return _forbidden("page HTML", "HTML page")
    if what == "doctype":
        return _forbidden("XML avec DOCTYPE", "XML with a DOCTYPE")
    if what == "root":
        element = _ascii(local, _DETAIL_MAX)
        return _forbidden(f"XML autre que CDA, element {element}", f"XML other than CDA, element {element}")
    return _forbidden("XML mal forme ou HTML", "malformed XML or HTML")


def _is_markup(content: bytes) -> bool:
    if content.startswith((b"\xff\xfe<\x00", b"\xfe\xff\x00<")):  # UTF-16 with its BOM
        return True
    return content.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n").startswith(b"<")


_CONTROLS = bytes(b for b in range(0x20) if b not in b"\t\n\x0c\r")


def _is_text(content: bytes) -> bool:
    if b"\x00" in content:
        return False
    try:
        content.decode("utf-8")
        return True
    except UnicodeDecodeError:
        # a single-byte charset (latin-1, windows-1252): no C0 controls but layout ones
        return len(content.translate(None, _CONTROLS)) == len(content)


# puremagic signatures we name in French; other finds are named by puremagic's label.
_FAMILIES: dict[bytes, tuple[str, str]] = {
    b"MZ": ("executable Windows", "Windows executable"),
    b"\x7fELF": ("executable ELF (Linux)", "ELF executable (Linux)"),
}


def _what_is(content: bytes) -> _Refusal:
    """Name a refused content, as precisely as puremagic can."""
    try:
        matches = puremagic.magic_string(content)
    except Exception:  # PureError (nothing known) or ValueError (empty): unnamed
        matches = []
    for match in matches:
        if match.offset == 0 and match.byte_match in _FAMILIES:
            return _forbidden(*_FAMILIES[match.byte_match])
    if matches:
        label = _ascii(str(matches[0].name), _DETAIL_MAX)
        return _forbidden(label, label)
    return _forbidden("contenu binaire non reconnu", "unrecognised binary content")


def _identify(content: bytes, limits: AttachmentLimits) -> Kind | _Refusal:
    """The real kind of a content, or why it is not allowed."""
    for signature, kind in _SIGNATURES:
        if content.startswith(signature):
            return kind if kind is not None else _ole2_kind(content)
    if content.startswith(_ZIP_SIGNATURES):
        return _zip_kind(content, limits)
    # Text-looking content that runs code when opened: refused before the text rule.
    if content.startswith(b"#!"):
        return _forbidden("script", "script")
    if content.startswith(b"%!"):
        return _forbidden("PostScript", "PostScript")
    if content.startswith(b"MZ"):  # a DOS header can be all printable: never text
        return _what_is(content)
    if _is_markup(content):
        # HTML and SVG can carry scripts; of all XML only CDA is on the list
        return _markup_kind(content)
    if _is_text(content):
        return Kind.TEXT
    return _what_is(content)


def sniff(content: bytes, limits: AttachmentLimits | None = None) -> Kind | None:
    """The allowed kind `content` really is, or None when it is none of them.

    Zips are opened only after their central directory passed `check_zip` (under
    `limits`, default `AttachmentLimits()`); an unsafe zip is None.
    """
    found = _identify(content, limits or _DEFAULT_LIMITS)
    return found if isinstance(found, Kind) else None


# --- Zip packages ------------------------------------------------------------------------------

_XDM_METADATA = "ihe_xdm/subset01/metadata.xml"  # IHE ITI TF-2b §3.32; any letter case
# OOXML part names compare case-insensitively (ECMA-376 Part 2 §9.1.1).
_DOCX_PARTS = ("[content_types].xml", "word/document.xml")
_DOCX_MACROS = "word/vbaproject.bin"  # a .docm renamed .docx


def _count_entries(content: bytes, limit: int) -> _Refusal | None:
    """Refuse too many entries, Zip64 and multi-volume archives from the raw central
    directory, before zipfile builds one ZipInfo per record (policy/zipsafety.py).
    Unreadable layouts are left to zipfile."""
    problem = zipsafety.directory_problem(content, limit)
    if problem is None or problem.code in ("not_zip", "bad_directory"):
        return None
    return _zip_refusal(problem.fr, problem.en)


def _entry_problem(index: int, info: zipfile.ZipInfo, limits: AttachmentLimits) -> _Refusal | None:
    # Entry names are never echoed: they may carry a patient's name. The number is enough
    # for the sender's support to find the entry.
    problem = zipsafety.entry_problem(info)
    if problem is not None:
        if problem.code in zipsafety.UNSAFE_NAME:
            return _zip_refusal(f"fichier {index}, nom dangereux ({problem.fr})",
                                f"entry {index}, unsafe name ({problem.en})")
        if problem.code == "encrypted":
            return _zip_refusal(f"fichier {index} chiffre", f"entry {index} encrypted")
        return _zip_refusal(f"fichier {index}, {problem.fr}", f"entry {index}, {problem.en}")
    # compress_size 0 with data is an infinite ratio: multiply, never divide.
    if info.file_size > limits.zip_max_ratio * info.compress_size:
        return _zip_refusal(f"fichier {index}, taux de compression suspect (bombe zip?)",
                            f"entry {index}, suspicious compression ratio (zip bomb?)")
    return None


def _zip_problem(content: bytes, limits: AttachmentLimits) -> _Refusal | list[zipfile.ZipInfo]:
    """The central directory's entries when it passes every bound, else why not."""
    counted = _count_entries(content, limits.zip_max_entries)
    if counted is not None:
        return counted
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            infos = archive.infolist()
    except Exception:  # BadZipFile, and whatever else zipfile raises on garbage
        return _zip_refusal("archive illisible", "unreadable archive")
    if len(infos) > limits.zip_max_entries:
        return _zip_refusal(f"plus de {limits.zip_max_entries} fichiers", f"more than {limits.zip_max_entries} files")
    seen: set[str] = set()
    unpacked = 0
    for index, info in enumerate(infos, 1):
        problem = _entry_problem(index, info, limits)
        if problem is not None:
            return problem
        if info.filename in seen:  # two readers could pick different copies
            return _zip_refusal(f"fichier {index}, nom en double", f"entry {index}, duplicate name")
        seen.add(info.filename)
        unpacked += info.file_size
    if unpacked > limits.zip_max_unpacked_bytes:
        fr_size, en_size = _size(limits.zip_max_unpacked_bytes)
        return _zip_refusal(f"plus de {fr_size} une fois decompresse", f"more than {en_size} unpacked")
    return infos


def check_zip(content: bytes, limits: AttachmentLimits, part: Part | None = None) -> Decision | None:
    """A `attachment_zip` refusal when the zip's central directory breaks a bound or a
    safety rule, else None. The refusal names `part` when given."""
    found = _zip_problem(content, limits)
    if isinstance(found, list):
        return None
    return _refuse(found, part or Part("?", "archive zip", "", None, b"", 0))


def _zip_kind(content: bytes, limits: AttachmentLimits) -> Kind | _Refusal:
    # Never puremagic's word for a zip: it calls any zip a .docx.
    found = _zip_problem(content, limits)
    if not isinstance(found, list):
        return found
    names = {info.filename.lower() for info in found}
    if _XDM_METADATA in names:  # the part's own file name (IHE_XDM.ZIP) is not required
        return Kind.XDM
    if all(n in names for n in _DOCX_PARTS):
        if _DOCX_MACROS in names:
            return _forbidden("document Word avec macros", "Word document with macros")
        return Kind.DOCX
    return _forbidden("archive zip autre que IHE_XDM", "zip archive other than IHE_XDM")


# --- Decisions ---------------------------------------------------------------------------------

_EXTENSION_RE = re.compile(r"\.([A-Za-z0-9]{1,5})$")


def _extension(filename: str | None) -> str | None:
    """The final ".xyz" of a file name, lower-case; None when there is none.

    Trailing dots and spaces are dropped first, as Windows drops them when it saves the
    file ("x.js " would run as x.js). An all-digit suffix ("CR 12.2024") is no extension.
    """
    if not filename:
        return None
    m = _EXTENSION_RE.search(filename.rstrip(". \t"))
    if m is None or m.group(1).isdigit():
        return None
    return m.group(1).lower()


# The message text itself (RFC 2046 §4.1): other text/* subtypes (a shell script
# declared text/x-shellscript) are attachments like any other part.
_BODY_TYPES = frozenset({"text/plain", "text/html", "text/enriched"})


def _der_sequence(content: bytes) -> bool:
    """Exactly one DER SEQUENCE (X.690 §8.1: tag 0x30, definite length), nothing more:
    what a detached CMS signature is, and not a script starting with "0"."""
    if len(content) < 2 or content[0] != 0x30:
        return False
    first = content[1]
    if first < 0x80:
        return len(content) == 2 + first
    n = first & 0x7F
    if not 1 <= n <= 3 or len(content) < 2 + n:
        return False
    return len(content) == 2 + n + int.from_bytes(content[2:2 + n], "big")


def _is_not_attachment(part: Part) -> bool:
    ctype = part.content_type or "text/plain"  # RFC 2045 §5.2: no type is text/plain
    if part.filename is None:
        if ctype in _BODY_TYPES and part.disposition != "attachment":
            return True  # the message text (RFC 2183 §2.1 for inline)
        if ctype in _REPORT_TYPES and _is_text(part.content):
            return True  # RFC 3464/8098 report fields: text, never a file
    # a detached signature (RFC 8551 §3.5.3): one DER SEQUENCE, unnamed or *.p7s
    return (ctype in _SMIME_SIGNATURES and len(part.content) < _SMIME_SIGNATURE_MAX
            and (part.filename is None or part.filename.lower().endswith(".p7s")) and _der_sequence(part.content))


def classify(part: Part, limits: AttachmentLimits) -> Attachment | Decision | None:
    """None when the part is not an attachment (the message text, a report part, an
    S/MIME signature); else the attachment with its real kind, or a refusal naming it."""
    if _is_not_attachment(part):
        return None
    if len(part.content) > limits.max_part_bytes:
        return _too_big(part, limits.max_part_bytes)
    found = _identify(part.content, limits)
    if isinstance(found, _Refusal):
        return _refuse(found, part)
    kind = found
    fr_kind, en_kind = _LABELS[kind]
    declared = part.content_type
    if declared not in _DECLARES_NOTHING and declared not in _DECLARED[kind]:
        shown = _ascii(declared, _DETAIL_MAX)
        return _refuse(_Refusal("attachment_mismatch", f"declaree {shown} mais contenu {fr_kind}",
                                f"declared {shown} but content is {en_kind}"), part)
    extension = _extension(part.filename)
    if extension is not None and extension not in _KNOWN_EXTENSIONS:
        return _refuse(_Refusal("attachment_forbidden", f"extension .{extension} non autorisee",
                                f"extension .{extension} not allowed"), part)
    if extension is not None and extension not in _EXTENSIONS[kind]:
        return _refuse(_Refusal("attachment_mismatch", f"extension .{extension} mais contenu {fr_kind}",
                                f"extension .{extension} but content is {en_kind}"), part)
    return Attachment(part, kind)


def check_message(parts: Sequence[Part], limits: AttachmentLimits) -> list[Attachment] | Decision:
    """The attachments of a message, in order, or the first refusal (part order)."""
    attachments: list[Attachment] = []
    total = 0
    for part in parts:
        found = classify(part, limits)
        if isinstance(found, Decision):
            return found
        if found is None:
            continue
        total += len(part.content)
        if total > limits.max_total_bytes:
            fr_size, en_size = _size(limits.max_total_bytes)
            return Decision(552, "5.3.4", f"Pieces jointes trop volumineuses ({fr_size} au total au plus)",
                            f"Attachments too big ({en_size} in total at most)", "attachment_too_big")
        attachments.append(found)
    return attachments


# --- IHE_XDM package content -------------------------------------------------------------
#
# Issue 10 §4: a document inside an IHE_XDM package is an attachment like any other: the
# patient unpacks the package and opens its files. So every file entry passes `classify`,
# the very function a direct attachment passes, and one refusal refuses the whole message
# (554 5.6.1 naming "<package>/<entry>"). Only the two kinds of file the XDM profile itself
# requires are judged otherwise (IHE ITI TF-1 §16.1, TF-2b §3.32.4.1.4): each
# IHE_XDM/<subset>/METADATA.XML, which dossier_bridge/xdm.py reads as ebRIM (DTDs and
# entities refused, the whole package refused when unreadable), and the INDEX.HTM of the
# root, HTML on no allow-list, accepted only when inert (`_inert_html`). README.TXT is
# plain text and passes `classify` as such.
#
# Nested packages: an IHE_XDM inside an IHE_XDM is refused (the profile has no such
# thing, and a recursion would multiply every bound); any other zip is refused by
# `classify` itself ("archive zip autre que IHE_XDM"), so "a zip holding an .exe" never
# needs unpacking. A .docx, the one zip on the allow-list, is checked exactly as a
# direct .docx (central directory bounds, no macros) and not unpacked further, as for a
# direct attachment. The entries' bytes were unpacked within the package's own bounds
# (zip_max_unpacked_bytes, zip_max_ratio, zip_max_entries), and each entry is bounded
# by max_part_bytes as any part is.


@dataclass(frozen=True, slots=True)
class PackageEntry:
    """One file of an IHE_XDM package, unpacked."""

    path: str  # as stored in the zip, e.g. "IHE_XDM/SUBSET01/DOC0001.PDF"
    content: bytes = field(repr=False)  # health content: never in a repr
    # the mimeType of each DocumentEntry of METADATA.XML naming this file (lower-case);
    # empty when none does (an extra file the patient still finds in the package)
    declared_types: tuple[str, ...] = ()


_INDEX_HTM = "index.htm"  # ITI TF-2b §3.32.4.1.4.1: at the root, any letter case
_INDEX_MAX = 256 * 1024  # a real INDEX.HTM is a few kB of links
# Tags and attributes of a page of links and text (HTML 4.01 §7-§12 vocabulary): nothing
# that runs (script, event handlers, object/embed/iframe, forms), loads (img, link,
# style, base) or redirects (meta refresh). Anything else refuses the page: an allow-list,
# because a browser repairs tag soup in more ways than a deny-list can foresee.
_HTML_TAGS = frozenset({
    "html", "head", "title", "meta", "body", "div", "span", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
    "a", "ul", "ol", "li", "dl", "dt", "dd", "table", "caption", "thead", "tbody", "tfoot", "tr", "th", "td",
    "col", "colgroup", "b", "i", "u", "em", "strong", "small", "big", "sub", "sup", "pre", "code", "tt", "font",
    "center", "blockquote", "address", "abbr", "cite", "q",
})
_HTML_ATTRS = frozenset({
    "href", "title", "lang", "xml:lang", "dir", "id", "class", "name", "align", "valign", "width", "height",
    "border", "cellpadding", "cellspacing", "colspan", "rowspan", "summary", "size", "face", "color", "bgcolor",
    "xmlns", "charset", "http-equiv", "content", "type", "start", "value", "scope", "headers", "abbr", "axis",
})
_URL_SCHEMES = frozenset({"http", "https", "mailto"})
_HTML_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "iso-8859-1", "iso-8859-15", "windows-1252", "latin1"})
_URL_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_CHARSET_RE = re.compile(r"charset\s*=\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f]+")  # browsers drop them inside a URL scheme


class _Inert(Exception):
    """The page is not inert; the message says what made it so (no content quoted)."""


def _check_url(value: str) -> None:
    url = _INVISIBLE.sub("", value)
    scheme = _URL_SCHEME_RE.match(url)
    if scheme is not None and scheme.group(1).lower() not in _URL_SCHEMES:
        raise _Inert("url")  # javascript:, data:, vbscript:, file:...


def _check_tag(tag: str, attrs: list[tuple[str, str | None]]) -> None:
    if tag not in _HTML_TAGS:
        raise _Inert(tag)
    names = {name for name, _ in attrs}
    for name, value in attrs:
        if name not in _HTML_ATTRS:
            raise _Inert(name)  # onclick, onload, style, src, action...
        value = value or ""
        if name == "href":
            _check_url(value)
        elif name == "http-equiv" and value.strip().lower() != "content-type":
            raise _Inert("http-equiv")  # refresh: a redirect, set-cookie...
        elif name == "charset" and value.strip().lower() not in _HTML_CHARSETS:
            raise _Inert("charset")  # UTF-7 and kin make markup out of plain bytes
        elif name == "content" and tag == "meta" and "http-equiv" in names:
            found = _CHARSET_RE.search(value)
            if found is not None and found.group(1).lower() not in _HTML_CHARSETS:
                raise _Inert("charset")


class _Page(HTMLParser):
    """Raises _Inert at the first thing that is not text or a link."""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        _check_tag(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        _check_tag(tag, attrs)

    def handle_comment(self, data: str) -> None:
        if "<" in data or "[if" in data.lower():
            raise _Inert("comment")  # old Internet Explorer ran conditional comments

    def handle_pi(self, data: str) -> None:
        if not data.lower().startswith("xml "):
            raise _Inert("pi")  # an xml-stylesheet can run a transformation

    def unknown_decl(self, data: str) -> None:
        raise _Inert("declaration")  # CDATA and kin


def _inert_html(content: bytes) -> bool:
    """Whether an HTML page only shows text and links: what a reader's browser does
    with it never runs code, loads anything or redirects. Pure and bounded: stdlib
    html.parser, which never fetches anything."""
    if len(content) > _INDEX_MAX or b"\x00" in content or content.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    lowered = content.lower()
    if b"<script" in lowered or b"javascript:" in lowered or b"vbscript:" in lowered:
        return False  # belt and braces: however the parser below reads the soup
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        text = content.decode("latin-1")

    page = _Page(convert_charrefs=True)  # "jav&#x61;script:" is read as the browser reads it
    try:
        page.feed(text)
        page.close()
    except _Inert:
        return False
    except Exception:  # whatever the parser makes of hostile bytes: not inert
        return False
    return True


def _entry_name(package: Part, path: str) -> str:
    """How a reply names an entry: "<package file name>/<entry path>", shortened in
    the middle to fit `_NAME_MAX` so the entry's own file name stays readable."""
    outer = (package.filename or "").strip() or f"partie {package.path}"
    name = f"{outer}/{path}"
    if len(name) <= _NAME_MAX:
        return name
    base = path.rsplit("/", 1)[-1]
    return f"{outer[:20]}/.../{base}"[-_NAME_MAX:]


def _is_metadata(path: str) -> bool:
    parts = path.casefold().split("/")
    return len(parts) == 3 and parts[0] == "ihe_xdm" and bool(parts[1]) and parts[2] == "metadata.xml"


def check_package(package: Part, entries: Sequence[PackageEntry], limits: AttachmentLimits) -> Decision | None:
    """The first refusal among the files of an IHE_XDM package (in their order), naming
    "<package>/<entry>", or None when every file passes the attachment rules.

    `package` is the message part holding the package; `entries` are its file entries
    as unpacked by dossier_bridge/xdm.py, with the types METADATA.XML declares."""
    for entry in entries:
        if _is_metadata(entry.path):
            continue  # read, as ebRIM and nothing else, by dossier_bridge/xdm.py
        name = _entry_name(package, entry.path)
        part = Part(entry.path, name, "", "attachment", entry.content, package.depth + 1)
        if entry.path.casefold() == _INDEX_HTM:
            if not _inert_html(entry.content):
                return _refuse(_forbidden("page HTML avec contenu actif", "HTML page with active content"), part)
            continue
        # every declared type must fit the real content, as a part's Content-Type does
        for declared in entry.declared_types or ("",):
            found = classify(Part(entry.path, name, declared, "attachment", entry.content, part.depth), limits)
            if isinstance(found, Decision):
                return found
            if found is not None and found.kind is Kind.XDM:
                return _refuse(_forbidden("paquet IHE_XDM dans un paquet", "IHE_XDM package inside a package"), part)
    return None
