"""From a professional's message to documents of the patient's dossier (DESIGN.md §4
"Dossier").

Implementation notes:
- Two steps, so a message to several patients is parsed once: `candidates` reads every
  accepted attachment (an IHE_XDM.ZIP is unpacked and its METADATA.XML mapped, a bare
  CDA's header read) and may refuse the message when a package turns out hostile while
  unpacking (its central directory passed policy.attachments, its real content did
  not); `for_recipient` then keeps, for one patient, the documents that may be filed.
- Every file of an IHE_XDM package is an attachment (`open_package`, called by
  `inspect_message` for every message, filed or not): one file the allow-list refuses
  refuses the whole message, 554 5.6.1 naming "<package>/<entry>" (issue 10 §4). The
  MX, submission and the patient's filing share `inspect_message`, hence the rule.
- Identity: a document that names its patient (XDM `patientId`, CDA
  `recordTarget/patientRole/id`) is filed only when that is the recipient's INS under
  an INS OID; otherwise it is skipped with a reason (the message is still delivered).
  A CDA that names no INS at all is skipped too: a dossier is no place for a document
  about an unidentified patient. A PDF or an image names nobody and is filed.
- Metadata precedence: the XDM DocumentEntry, then the CDA header, then the message
  (Date, From), then the file name. The author's certificate subject comes from the
  TLS session, the only author fact not written by the sender.
- The headers X-MSS-CODECDA, X-MSS-INS and X-MSS-NIL that professional software sets
  are kept with every document of the message (and the message keeps them too).
"""
from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from dossier_bridge.cda import INS_OIDS, CdaError, parse_cda
from dossier_bridge.xdm import XdmError, XdmPackage, read_xdm
from mailbox_store.documents import NewDocument, StoredDocument
from mailbox_store.store import MailboxInfo, Store
from policy.attachments import (Attachment, AttachmentLimits, Kind, PackageEntry, Part,
                                check_package, classify, mime_parts, refuse_part)
from policy.decisions import Decision
from policy.headers import header_block
from policy.mime import Headers, UnknownCte, decode_cte
from policy.parsed import ParsedMessage
from policy.parsed import parse as parse_message

MSS_HEADERS = ("X-MSS-CODECDA", "X-MSS-INS", "X-MSS-NIL")


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """What the message itself says about its documents."""

    message_id: str  # Message-ID, or a digest of the message when it has none
    date: str | None  # ISO 8601 from the Date header
    from_address: str | None
    cert_subject: str | None  # of the sending server's TLS client certificate (MX only)
    mss_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A document read from an attachment, before the recipient is known."""

    content: bytes
    meta: dict[str, Any]
    # INS the document names (under an INS OID); None: it names no patient (PDF, image)
    patient_ins: frozenset[str] | None
    names_patient: bool  # it carries a patient identity (which may hold no INS at all)
    refused: str | None = None  # filed for nobody, and why (an XDM entry that fails the rules)
    locator: str | None = None  # where in the message the content lies (read_document)


@dataclass(frozen=True, slots=True)
class Skipped:
    name: str
    reason: str
    sha256: str


def _header(headers: Message | Headers, name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    text = " ".join(str(value).split())  # unfolded (RFC 5322 §2.2.3)
    return text[:998] or None


def source_of(headers: Message | Headers, raw: bytes, cert_subject: str | None = None) -> SourceMessage:
    """The message's facts; `raw` is what the sender sent (no trace headers of ours),
    so a redelivery of a message without Message-ID gets the same digest."""
    # without a Message-ID, the body's digest: the same whether the message is filed at
    # delivery or later from the patient's copy (whose headers gained our trace fields)
    message_id = _header(headers, "Message-ID") or \
        "sha256:" + hashlib.sha256(raw[len(header_block(raw)):]).hexdigest()
    date = None
    if (text := _header(headers, "Date")) is not None:
        try:
            date = email.utils.parsedate_to_datetime(text).isoformat()
        except (TypeError, ValueError, IndexError):
            date = None
    from_addr = None
    if (text := _header(headers, "From")) is not None:
        addrs = [a for _, a in email.utils.getaddresses([text]) if "@" in a]
        from_addr = addrs[0].lower() if addrs else None
    mss = {h: v for h in MSS_HEADERS if (v := _header(headers, h)) is not None}
    return SourceMessage(message_id, date, from_addr, cert_subject, mss)


def _base_meta(src: SourceMessage, att_name: str | None, content: bytes, mime_type: str,
               origin: str) -> dict[str, Any]:
    return {
        "title": att_name or "Document",
        "filename": att_name,
        "mime_type": mime_type,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "category": None,
        "type_code": None,
        "type_display": None,
        "date": src.date,
        "author": {"address": src.from_address, "cert_subject": src.cert_subject, "id": None, "name": None},
        "source_message_id": src.message_id,
        "origin": origin,
        "mss": dict(src.mss_headers),
    }


def _with_cda(meta: dict[str, Any], content: bytes) -> tuple[dict[str, Any], frozenset[str], bool]:
    """The CDA header's facts over `meta` (only where the header has them)."""
    try:
        cda = parse_cda(content)
    except CdaError:
        return meta, frozenset(), True  # declared CDA yet unreadable: names no INS we can check
    meta = dict(meta)
    if cda.title:
        meta["title"] = cda.title
    if cda.code:
        meta["type_code"], meta["type_display"] = cda.code, cda.code_display
    if cda.effective_time is not None:
        meta["date"] = cda.effective_time.isoformat()
    author = dict(meta["author"])
    if cda.author_rpps:
        author["id"] = cda.author_rpps
    if cda.author_name:
        author["name"] = cda.author_name
    meta["author"] = author
    return meta, frozenset(cda.ins_ids), True


def open_package(att: Attachment, limits: AttachmentLimits) -> XdmPackage | Decision:
    """An IHE_XDM attachment unpacked, every file of it passed through the attachment
    rules (policy.attachments.check_package, the `classify` of a direct attachment,
    under the types METADATA.XML declares); else the refusal of the whole message,
    naming the package or the entry (issue 10 §4). CPU-bound."""
    try:
        package = read_xdm(att.part.content, limits)
    except XdmError as e:
        return refuse_part(att.part, "attachment_zip", f"paquet IHE_XDM: {e}", f"IHE_XDM package: {e}")
    declared: dict[str, list[str]] = {}
    for d in package.documents:
        declared.setdefault(d.path, []).append((d.mime_type or "").lower())
    entries = [PackageEntry(f.path, f.content, tuple(dict.fromkeys(declared.get(f.path, ()))))
               for f in package.files]
    refusal = check_package(att.part, entries, limits)
    return package if refusal is None else refusal


def _locator(part: Part) -> str:
    """Where a part's content lies in its message (issue 15 item 4): the byte range of
    its encoded body and its transfer encoding ("at:S-E|cte:base64"), which no change of
    part numbering can move; the part number is kept for the logs and for reading
    documents filed before ranges existed. The sha256 recorded beside it still checks
    every read."""
    if part.span is None:
        return f"part:{part.path}"
    return f"part:{part.path}|at:{part.span[0]}-{part.span[1]}|cte:{part.encoding or '7bit'}"


def shifted(filing: Filing, delta: int) -> Filing:
    """The filing with its byte ranges moved by `delta`: the MX stores the message with
    its trace headers in front (and its own Authentication-Results out of the header),
    which moves every body offset by the same amount."""
    if not delta:
        return filing

    def move(locator: str | None) -> str | None:
        if locator is None:
            return None
        items = []
        for item in locator.split("|"):
            key, _, value = item.partition(":")
            if key == "at":
                start, _, end = value.partition("-")
                item = f"at:{int(start) + delta}-{int(end) + delta}"
            items.append(item)
        return "|".join(items)

    return Filing([(mb, [dataclasses.replace(d, locator=move(d.locator)) for d in docs])
                   for mb, docs in filing.documents], list(filing.not_filed))


def candidates(attachments: Sequence[Attachment], src: SourceMessage, limits: AttachmentLimits,
               packages: Mapping[str, XdmPackage] | None = None) -> list[Candidate] | Decision:
    """`packages`: the IHE_XDM attachments already opened by `open_package`, by part
    path; the others are opened here."""
    out: list[Candidate] = []
    for att in attachments:
        name = att.part.filename
        if name is None and att.part.disposition != "attachment":
            # an image of the body itself (a logo in an HTML signature, RFC 2387
            # multipart/related): checked like any part, but not a document
            continue
        if att.kind is Kind.XDM:
            package = (packages or {}).get(att.part.path) or open_package(att, limits)
            if isinstance(package, Decision):
                return package
            if not package.documents:
                # a package that files nothing says why in the audit log (issue 15 item 7):
                # the first problem the reader met names entries and folders, never content
                why = package.problems[0] if package.problems else "no DocumentEntry"
                meta = _base_meta(src, name, att.part.content, att.mime_type, "xdm")
                out.append(Candidate(att.part.content, meta, None, False, f"xdm_no_document ({why[:160]})",
                                     _locator(att.part)))
            for d in package.documents:
                filename = d.path.rsplit("/", 1)[-1]
                meta = _base_meta(src, filename, d.content, d.mime_type or "application/octet-stream", "xdm")
                # every entry passed the rules of a bare attachment (open_package); its
                # kind decides whether a CDA header is read, its hash whether it is filed
                entry = classify(Part(d.path, filename, (d.mime_type or "").lower(), "attachment", d.content, 1),
                                 limits)
                refused = None
                if not isinstance(entry, Attachment) or entry.kind is Kind.XDM:
                    refused = "xdm_entry_not_allowed"  # not reached: open_package refused it first
                elif d.hash_ok is False:
                    refused = "xdm_hash_mismatch"
                cda_ins: frozenset[str] = frozenset()
                if isinstance(entry, Attachment) and entry.kind is Kind.CDA:
                    meta, cda_ins, _ = _with_cda(meta, d.content)  # XDM metadata below wins
                if d.title:
                    meta["title"] = d.title
                if d.class_code is not None:
                    meta["category"] = d.class_code.display or d.class_code.code
                if d.type_code is not None:
                    meta["type_code"], meta["type_display"] = d.type_code.code, d.type_code.display
                if d.creation_time is not None:
                    meta["date"] = d.creation_time.isoformat()
                person = d.authors[0].person if d.authors else None
                if person is not None:
                    author = dict(meta["author"])
                    author["id"] = person.id or author["id"]
                    author["name"] = " ".join(x for x in (person.given, person.family) if x) or author["name"]
                    meta["author"] = author
                meta["xdm"] = {"unique_id": d.unique_id, "entry": d.path, "hash_ok": d.hash_ok}
                pid = d.patient_id
                ins = frozenset({pid[0]}) if pid is not None and pid[1] in INS_OIDS else frozenset()
                if cda_ins:  # the document's own header must name the same patient
                    ins &= cda_ins
                out.append(Candidate(d.content, meta, ins, True, refused,
                                     f"{_locator(att.part)}|xdm:{d.path}"))
        elif att.kind is Kind.CDA:
            meta, ins, names = _with_cda(_base_meta(src, name, att.part.content, att.mime_type, "cda"),
                                         att.part.content)
            out.append(Candidate(att.part.content, meta, ins, names, locator=_locator(att.part)))
        else:
            meta = _base_meta(src, name, att.part.content, att.mime_type, "attachment")
            out.append(Candidate(att.part.content, meta, None, False, locator=_locator(att.part)))
    return out


def for_recipient(cands: Sequence[Candidate], ins: str, src: SourceMessage) -> tuple[list[NewDocument], list[Skipped]]:
    """The documents one patient's dossier receives, and those skipped with why."""
    docs: list[NewDocument] = []
    skipped: list[Skipped] = []
    for c in cands:
        if c.refused is not None:
            skipped.append(Skipped(str(c.meta.get("filename")), c.refused, c.meta["sha256"]))
            continue
        if c.names_patient and (not c.patient_ins or ins not in c.patient_ins):
            reason = "patient_id_mismatch" if c.patient_ins else "no_ins_in_document"
            skipped.append(Skipped(str(c.meta.get("filename") or c.meta.get("title")), reason, c.meta["sha256"]))
            continue
        docs.append(NewDocument(src.message_id, c.content, c.meta, c.meta["sha256"], c.locator))
    return docs, skipped


@dataclass(frozen=True, slots=True)
class Filing:
    """What a delivery files: documents per mailbox, and (mailbox, reason) not filed."""

    documents: list[tuple[MailboxInfo, list[NewDocument]]] = field(default_factory=list)
    not_filed: list[tuple[MailboxInfo, str]] = field(default_factory=list)


def inspect_message(message: bytes | ParsedMessage, recipients: Sequence[MailboxInfo], limits: AttachmentLimits,
                    cert_subject: str | None = None, file: bool = True) -> Filing | Decision:
    """The attachment rules over a whole message, the files of its IHE_XDM packages
    included (a refusal names the part, or "<package>/<entry>"), then, when `file`,
    the documents each recipient's dossier receives. CPU-bound. The message is the
    one parse of the inbound pipeline (policy/parsed.py: its parts were classified
    under these `limits`), or bytes, parsed here once for all recipients."""
    parsed = message if isinstance(message, ParsedMessage) else parse_message(message, limits)
    attachments = parsed.attachments
    if isinstance(attachments, Decision):
        return attachments
    # the content of IHE_XDM packages is attachment content (issue 10 §4): checked for
    # every message, whether or not anything is filed (a bounce, a patient's own mail)
    packages: dict[str, XdmPackage] = {}
    unpacked = 0
    for att in attachments:
        if att.kind is Kind.XDM:
            # zip_max_unpacked_bytes bounds all the packages of one message together:
            # ten packages must not hold ten times the memory one may
            budget = dataclasses.replace(limits, zip_max_unpacked_bytes=limits.zip_max_unpacked_bytes - unpacked)
            package = open_package(att, budget)
            if isinstance(package, Decision):
                return package
            unpacked += sum(len(f.content) for f in package.files)
            # the files no DocumentEntry names are checked and done with: freed now
            packages[att.part.path] = dataclasses.replace(package, files=())
    if not file or not attachments or not recipients:
        return Filing()
    src = source_of(parsed.headers, parsed.raw, cert_subject)
    cands = candidates(attachments, src, limits, packages)
    if isinstance(cands, Decision):
        return cands
    filing = Filing()
    for mb in recipients:
        docs, skipped = for_recipient(cands, mb.ins, src)
        if docs:
            filing.documents.append((mb, docs))
        # the audit log says why, never what: no title nor file name (health content)
        filing.not_filed.extend((mb, f"{s.reason} sha256:{s.sha256[:16]}") for s in skipped)
    return filing


class DocumentUnreadable(ValueError):
    pass


def locate(raw: bytes, locator: str, limits: AttachmentLimits) -> bytes:
    """The content a locator names in its message: the MIME part (decoded), and in an
    IHE_XDM package, the entry. Raises DocumentUnreadable."""
    where = dict(item.split(":", 1) for item in locator.split("|") if ":" in item)
    if "at" in where:  # the byte range of the encoded body (_locator)
        start, _, end = where["at"].partition("-")
        try:
            span = slice(int(start), int(end))
            content = decode_cte(raw[span], where.get("cte"))
        except (ValueError, UnknownCte):
            raise DocumentUnreadable("bad byte range or transfer encoding in the locator") from None
    else:  # a document filed before byte ranges: found again by part number
        parts = mime_parts(raw, limits)
        if isinstance(parts, Decision):
            raise DocumentUnreadable(f"message unreadable: {parts.en}")
        part = next((p for p in parts if p.path == where.get("part")), None)
        if part is None:
            raise DocumentUnreadable(f"no part {where.get('part')} in the message")
        content = part.content
    if "xdm" not in where:
        return content
    try:
        package = read_xdm(content, limits)
    except XdmError as e:
        raise DocumentUnreadable(f"package unreadable: {e}") from None
    entry = next((d for d in package.documents if d.path == where["xdm"]), None)
    if entry is None:
        raise DocumentUnreadable("no such entry in the package")
    return entry.content


async def read_document(store: "Store", mailbox: MailboxInfo, doc_id: str, actor: str, source: str,
                        limits: AttachmentLimits) -> tuple[StoredDocument, bytes]:
    """A dossier document and its content (the download audited by the store), checked
    against the sha256 recorded when it was filed."""
    doc, blob = await store.document(mailbox, doc_id, actor=actor, source=source)
    content = blob if doc.locator is None else await asyncio.to_thread(locate, blob, doc.locator, limits)
    if hashlib.sha256(content).hexdigest() != doc.meta.get("sha256"):
        raise DocumentUnreadable(f"document {doc_id} does not match its recorded sha256")
    return doc, content

