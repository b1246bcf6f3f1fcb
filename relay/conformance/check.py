"""`mssante-relay conformance check FILE.eml …`: a message judged as our MX and dossier
would judge it, without sending it.

Implementation notes:
- Parsed once, as the MX parses (policy/parsed.py); no rule is written twice: the
  recipient goes through policy.recipients, the attachments (and every file of an
  IHE_XDM package) through dossier_bridge.dossier.inspect_message, the package's documents through
  dossier_bridge.dossier.candidates / for_recipient (hash and patientId), the CDA
  headers through dossier_bridge.cda, the MSSanté headers through policy.mss_headers,
  `[FIN]` and `X-MSS-MES` through policy.conversation.
- One Outcome per check, named `<area>.<what>`, with the rule it comes from.
"""
from __future__ import annotations

import dataclasses
import email.utils
from collections.abc import Sequence
from email.message import Message

from dossier_bridge.cda import CdaError, identity_traits, parse_cda
from dossier_bridge.dossier import candidates, for_recipient, inspect_message, open_package, source_of
from dossier_bridge.xdm import XdmPackage
from policy import mss_headers
from policy.addresses import AddressKind
from policy.attachments import Attachment, AttachmentLimits, Kind, Part, classify
from policy.conversation import closes_exchange, decode_subject
from policy.decisions import MESSAGE_TOO_BIG, Decision
from policy.mime import Headers
from policy.parsed import parse as parse_message
from policy.recipients import classify_recipient
from relay.conformance.results import Outcome, Status

DEFAULT_MAX_SIZE = 26214400  # mx.max_message_size (DESIGN.md §4 "Size and attachments")


def _o(name: str, ok: bool | None, reason: str, rule: str, title: str = "") -> Outcome:
    status = Status.SKIP if ok is None else Status.PASS if ok else Status.FAIL
    return Outcome(name, title or name, status, reason, rule)


def _finding(f: mss_headers.HeaderFinding) -> tuple[bool, str, str]:
    return f.ok, f.detail, f.rule


def _recipients(headers: Message | Headers) -> list[str]:
    values = [str(v) for name in ("To", "Cc") for v in (headers.get_all(name) or [])]
    return [addr for _, addr in email.utils.getaddresses(values) if addr]


def _header(headers: Message | Headers, name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else " ".join(str(value).split())


def check_eml(raw: bytes, limits: AttachmentLimits | None = None, max_size: int = DEFAULT_MAX_SIZE,
                  domain: str = "patient.mssante.fr") -> list[Outcome]:
    """Every check of one message, in order: size, recipients, attachments, IHE_XDM
    packages, MSSanté headers, closing syntax."""
    limits = limits or AttachmentLimits()
    out: list[Outcome] = []
    out.append(_o("size", len(raw) <= max_size,
                  f"{len(raw)} bytes {'within' if len(raw) <= max_size else 'over'} the {max_size} bytes limit"
                  + ("" if len(raw) <= max_size else f" ({MESSAGE_TOO_BIG.code} {MESSAGE_TOO_BIG.status})"),
                  MESSAGE_TOO_BIG.rule, "the message is not over the MX size limit"))
    parsed = parse_message(raw, limits)  # once, as the MX parses it (relay/inbound)
    headers = parsed.headers

    # the recipient: an INS address of the patients' domain, with the right key
    patients: list[str] = []
    rcpts = _recipients(headers)
    for addr in rcpts:
        c = classify_recipient(addr, domain)
        if isinstance(c, Decision):
            out.append(_o("recipient", False, f"{addr}: {c.code} {c.status} {c.en}", c.rule,
                          "the recipient is a patient address with a valid INS key"))
        elif c.kind is AddressKind.PATIENT and c.ins is not None:
            patients.append(c.ins.value)
            out.append(_o("recipient", True, f"{addr}: INS {c.ins.value}, key correct", "rcpt",
                          "the recipient is a patient address with a valid INS key"))
    if not rcpts:
        out.append(_o("recipient", False, "no To or Cc address", "rcpt"))
    elif not patients and not any(o.status is Status.FAIL for o in out if o.name == "recipient"):
        out.append(_o("recipient", False, f"no {domain} patient among {', '.join(rcpts)}", "rcpt"))

    # attachments: the MX's own pipeline (allow-list by real content, zip bounds, every
    # file of an IHE_XDM package); nothing filed
    verdict = inspect_message(parsed, [], limits, file=False)
    attachments: list[Attachment] = []
    if isinstance(verdict, Decision):
        out.append(_o("attachments", False, f"{verdict.code} {verdict.status} {verdict.en}", verdict.rule,
                      "every attachment is on the allow-list"))
    else:
        attachments = [] if isinstance(parsed.attachments, Decision) else list(parsed.attachments)
        kinds = ", ".join(f"{a.part.filename or a.part.path} ({a.kind.name})" for a in attachments) or "none"
        out.append(_o("attachments", True, f"on the allow-list: {kinds}", "attachment",
                      "every attachment is on the allow-list"))

    # IHE_XDM packages: structure, METADATA.XML, hashes and sizes, patientId
    cda_codes: list[str | None] = []
    qualified = False
    packages = [a for a in attachments if a.kind is Kind.XDM]
    src = source_of(headers, raw)
    for att in packages:
        label = att.part.filename or f"part {att.part.path}"
        package = open_package(att, limits)
        if isinstance(package, Decision):
            out.append(_o("xdm.structure", False, f"{label}: {package.en}", package.rule))
            continue
        out.append(_o("xdm.structure", True,
                      f"{label}: METADATA.XML readable, {len(package.documents)} document(s)", "xdm"))
        out.extend(_package_checks(package, label))
        cands = candidates([att], src, limits, {att.part.path: package})
        if isinstance(cands, Decision):
            out.append(_o("xdm.structure", False, f"{label}: {cands.en}", cands.rule))
            continue
        # the filing rule itself, asked of every document whatever its other faults
        unrefused = [dataclasses.replace(c, refused=None) for c in cands]
        for ins in patients:
            _, skipped = for_recipient(unrefused, ins, src)
            bad = [s for s in skipped if s.reason in ("patient_id_mismatch", "no_ins_in_document")]
            out.append(_o("xdm.patient_id", not bad,
                          f"{label}: " + ("; ".join(f"{s.name}: {s.reason} (not the recipient's INS {ins})"
                                                    for s in bad)
                                          if bad else f"every document names INS {ins} under an INS OID"),
                          "patient_id_mismatch" if bad else "xdm.patient_id"))
        for d in package.documents:
            entry = classify(Part(d.path, d.path.rsplit("/", 1)[-1], (d.mime_type or "").lower(), "attachment",
                                  d.content, 1), limits)
            if isinstance(entry, Attachment) and entry.kind is Kind.CDA:
                try:
                    cda_codes.append(parse_cda(d.content).code)
                    qualified = qualified or mss_headers.ins_qualified(identity_traits(d.content))
                except CdaError:
                    cda_codes.append(None)

    # the MSSanté headers of the client référentiel
    if isinstance(verdict, Decision):
        why = "the attachments are refused: the documents they hold cannot be read"
        out.append(_o("header.codecda", None, why, mss_headers.RULE_CODECDA))
        out.append(_o("header.ins", None, why, mss_headers.RULE_INS))
    else:
        out.append(_o("header.codecda", *_finding(mss_headers.check_codecda(
            _header(headers, mss_headers.CODECDA), cda_codes))))
        out.append(_o("header.ins", *_finding(mss_headers.check_ins(
            _header(headers, mss_headers.INS), len(cda_codes), qualified))))
    for name, finding in (
            ("header.nil", mss_headers.check_nil(_header(headers, mss_headers.NIL))),
            ("header.mes", mss_headers.check_mes(_header(headers, mss_headers.MES)))):
        out.append(_o(name, finding.ok, finding.detail, finding.rule))
    subject = decode_subject(headers.get("Subject"))
    finding = mss_headers.check_fin_subject(subject, closes_exchange(subject))
    out.append(_o("subject.fin", finding.ok, finding.detail, finding.rule))
    return out


def _package_checks(package: XdmPackage, label: str) -> Sequence[Outcome]:
    """The hash and size each DocumentEntry declares, against the bytes (ITI TF-3
    §4.2.3.2.8, .18); the daemon does not file an entry whose hash lies."""
    out: list[Outcome] = []
    hashes = [d for d in package.documents if d.hash_ok is False]
    sizes = [d for d in package.documents if d.size_ok is False]
    missing = [p for p in package.problems if p.endswith("; skipped")]
    out.append(_o("xdm.hash", not hashes,
                  f"{label}: " + ("; ".join(f"{d.path}: declared SHA-1 does not match the file" for d in hashes)
                                  if hashes else "every declared SHA-1 matches its file"),
                  "xdm_hash_mismatch" if hashes else "xdm.hash"))
    out.append(_o("xdm.size", not sizes,
                  f"{label}: " + ("; ".join(f"{d.path}: declared size does not match the file" for d in sizes)
                                  if sizes else "every declared size matches its file"), "xdm.size"))
    if missing or not package.documents:
        out.append(_o("xdm.documents", False,
                      f"{label}: " + ("; ".join(missing) if missing else "no DocumentEntry in METADATA.XML"),
                      "xdm.documents"))
    return out
