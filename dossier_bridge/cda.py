"""The header of an HL7 CDA R2 document (DESIGN.md §4 "Dossier").

A CDA received by messaging, bare or inside an IHE_XDM.ZIP, tells who the patient is
(`recordTarget/patientRole/id`), who wrote it (`author/assignedAuthor/id`), what it is
(`code`, `title`) and when (`effectiveTime`). This module reads those facts and nothing
else; it never validates the document against the CI-SIS schematrons.

Implementation notes:
- The bytes come from the outside world. XML is parsed with defusedxml with DTDs refused
  outright (`forbid_dtd=True`): a CDA never needs one, and refusing it also stops entity
  expansion (billion laughs) and external entities (XXE) before they start.
- Every failure surfaces as `CdaError` (a `ValueError`) with a short reason that holds no
  health content: the reason may end up in a log or in an SMTP reply.
- Pure: no file, no network, no clock.
"""
from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from policy.mss_headers import IdentityTraits

__all__ = [
    "CdaError",
    "CdaHeader",
    "HL7_NS",
    "INS_NIA_OID",
    "INS_NIR_DEMO_OID",
    "INS_NIR_OID",
    "INS_NIR_TEST_OID",
    "INS_OIDS",
    "LOINC_OID",
    "RPPS_OID",
    "embedded_document",
    "identity_traits",
    "parse_cda",
    "parse_hl7_ts",
    "rpps_from_idnps",
]

HL7_NS = "urn:hl7-org:v3"
_NS = {"h": HL7_NS}

LOINC_OID = "2.16.840.1.113883.6.1"

# Identifier of health professionals, ANS "identifiant national de PS" (idNat_PS, IDNPS).
# Its extension is not the bare RPPS number: it is a one-digit type followed by the
# number, "8" + the 11-digit RPPS for the professionals in RPPS ("0" + ADELI for the
# others). See `rpps_from_idnps`.
RPPS_OID = "1.2.250.1.71.4.2.1"

# INS OIDs (ANS Référentiel INS; FR Core profile fr-core-patient-ins).
INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_NIR_TEST_OID = "1.2.250.1.213.1.4.10"
# FR Core names .11 the INS-NIR of *demonstration* patients (not an INS-NIA test range).
# Left out of INS_OIDS on purpose: DESIGN.md §4 lists only .8, .9 and .10, and a demo
# identity must never be filed in a real dossier.
INS_NIR_DEMO_OID = "1.2.250.1.213.1.4.11"
INS_OIDS: frozenset[str] = frozenset({INS_NIR_OID, INS_NIA_OID, INS_NIR_TEST_OID})

# A level-1 CDA wraps one document; the message as a whole is capped at 25 MB
# (DESIGN.md §4 "Size and attachments"), so its wrapped document cannot be bigger.
DEFAULT_MAX_EMBEDDED_BYTES = 25 * 1024 * 1024


class CdaError(ValueError):
    """The bytes are not a CDA R2 document this module can read."""


@dataclass(frozen=True, slots=True)
class CdaHeader:
    """Facts of a CDA R2 header (HL7 CDA R2 §4.2.1, ClinicalDocument)."""

    title: str | None
    code: str | None
    code_system: str | None
    code_display: str | None
    effective_time: datetime | None
    author_ids: tuple[tuple[str, str], ...]  # (root, extension) of every header author id
    author_rpps: str | None  # extension under RPPS_OID as written: "8" + RPPS
    author_name: str | None
    patient_ids: tuple[tuple[str, str], ...]  # (root, extension) of recordTarget/patientRole/id

    @property
    def ins_ids(self) -> tuple[str, ...]:
        """The patient's INS (matricules) among `patient_ids`, in document order."""
        return tuple(ext for root, ext in self.patient_ids if root in INS_OIDS and ext)


# HL7 v3 data types, TS (point in time): YYYY[MM[DD[HH[MM[SS[.S{1,4}]]]]]][+/-ZZzz].
# We need at least a day: a month alone is not a point in time we can file.
_TS_RE = re.compile(
    r"(?P<date>\d{8})(?P<hour>\d{2})?(?P<minute>\d{2})?(?P<second>\d{2})?"
    r"(?:\.(?P<fraction>\d{1,6}))?(?P<zone>[+-]\d{4})?",
    re.ASCII,  # \d would otherwise accept any Unicode digit, and int() would read it
)


def parse_hl7_ts(value: str | None, default_tz: timezone = timezone.utc) -> datetime | None:
    """An HL7 v3 TS (or XDS DTM) as an aware datetime; None when absent or malformed.

    A value without zone offset is read in `default_tz`, UTC unless told otherwise:
    XDS DTM values are UTC by definition (ITI TF-3 §4.2.3.2, creationTime), and the CI-SIS asks
    CDA authors to give the offset, so a zone-less CDA time is an author's mistake we
    do not try to guess around. Always returning an aware datetime keeps callers from
    comparing naive and aware values. Never raises.
    """
    if not isinstance(value, str):
        return None
    match = _TS_RE.fullmatch(value.strip())
    if match is None:
        return None
    if match["fraction"] is not None and match["second"] is None:
        return None
    date = match["date"]
    tz = default_tz
    if match["zone"] is not None:
        zone = match["zone"]
        hours, minutes = int(zone[1:3]), int(zone[3:5])
        if hours > 14 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-offset if zone[0] == "-" else offset)
    fraction = match["fraction"] or ""
    try:
        return datetime(
            int(date[0:4]),
            int(date[4:6]),
            int(date[6:8]),
            int(match["hour"] or 0),
            int(match["minute"] or 0),
            int(match["second"] or 0),
            int(fraction.ljust(6, "0")) if fraction else 0,
            tzinfo=tz,
        )
    except ValueError:
        return None


def rpps_from_idnps(value: str | None) -> str | None:
    """The 11-digit RPPS number inside an idNat_PS ("8" + RPPS), else None."""
    if value is not None and len(value) == 12 and value.isascii() and value.isdigit() and value[0] == "8":
        return value[1:]
    return None


def parse_cda(content: bytes) -> CdaHeader:
    """Read the header of a CDA R2 document; `CdaError` if `content` is not one."""
    root = _parse_root(content)
    code = root.find("h:code", _NS)
    return CdaHeader(
        title=_text(root.find("h:title", _NS)),
        code=_attr(code, "code"),
        code_system=_attr(code, "codeSystem"),
        code_display=_attr(code, "displayName"),
        effective_time=parse_hl7_ts(_attr(root.find("h:effectiveTime", _NS), "value")),
        author_ids=_ids(root.findall("h:author/h:assignedAuthor/h:id", _NS)),
        author_rpps=_author_rpps(root),
        author_name=_author_name(root),
        patient_ids=_ids(root.findall("h:recordTarget/h:patientRole/h:id", _NS)),
    )


def embedded_document(
    content: bytes, max_bytes: int = DEFAULT_MAX_EMBEDDED_BYTES
) -> tuple[str, bytes] | None:
    """(mediaType, bytes) of the document a level-1 CDA wraps in `nonXMLBody/text`.

    None when the CDA has a structured body (or none). `CdaError` when the wrapped
    document is not inline (a `reference` we will not fetch), is compressed, is not
    strict base64, is empty or would exceed `max_bytes` once decoded.
    """
    root = _parse_root(content)
    text = root.find("h:component/h:nonXMLBody/h:text", _NS)
    if text is None:
        return None
    # HL7 v3 ED: mediaType defaults to text/plain, representation to TXT.
    media_type = (text.get("mediaType") or "text/plain").strip()
    representation = (text.get("representation") or "TXT").strip().upper()
    if text.get("compression"):
        # A compressed ED would be a second decompression to bound; CI-SIS never uses it.
        raise CdaError("compressed nonXMLBody not supported")
    if text.find("h:reference", _NS) is not None and not (text.text or "").strip():
        raise CdaError("nonXMLBody refers to an external document")
    raw = text.text or ""
    if representation == "B64":
        # Whitespace (line breaks) is allowed between base64 lines; nothing else is.
        compact = "".join(raw.split())
        if not compact:
            raise CdaError("empty nonXMLBody")
        if len(compact) // 4 * 3 > max_bytes + 2:
            raise CdaError("embedded document too large")
        try:
            data = binascii.a2b_base64(compact.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise CdaError("nonXMLBody is not valid base64") from exc
    elif representation == "TXT":
        data = raw.encode("utf-8")
        if not raw.strip():
            raise CdaError("empty nonXMLBody")
    else:
        raise CdaError("unknown nonXMLBody representation")
    if len(data) > max_bytes:
        raise CdaError("embedded document too large")
    return media_type, data


def _parse_root(content: bytes) -> Element:
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise CdaError("CDA content must be bytes")
    try:
        root = fromstring(bytes(content), forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        # DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
        raise CdaError(f"forbidden XML construct ({type(exc).__name__})") from exc
    except ParseError as exc:
        raise CdaError("not well-formed XML") from exc
    except (ValueError, LookupError, UnicodeError, RecursionError) as exc:
        # expat reports some broken encodings (declared but unknown) outside ParseError.
        raise CdaError("unreadable XML") from exc
    if root.tag != f"{{{HL7_NS}}}ClinicalDocument":
        raise CdaError("not a CDA document (root is not hl7:ClinicalDocument)")
    return root


def _collapse(value: str) -> str | None:
    collapsed = " ".join(value.split())
    return collapsed or None


def _text(element: Element | None) -> str | None:
    if element is None:
        return None
    return _collapse("".join(element.itertext()))


def _attr(element: Element | None, name: str) -> str | None:
    if element is None:
        return None
    value = element.get(name)
    if value is None:
        return None
    return value.strip() or None


def _ids(elements: list[Element]) -> tuple[tuple[str, str], ...]:
    # An II with a nullFlavor and no root identifies nothing; an II with a root only
    # is its own identifier (HL7 v3 II): we keep it with an empty extension.
    result = []
    for element in elements:
        root = _attr(element, "root")
        if root is None:
            continue
        result.append((root, _attr(element, "extension") or ""))
    return tuple(result)


def _author_rpps(root: Element) -> str | None:
    for element in root.findall("h:author/h:assignedAuthor/h:id", _NS):
        if _attr(element, "root") == RPPS_OID:
            extension = _attr(element, "extension")
            if extension:
                return extension
    return None


def _author_name(root: Element) -> str | None:
    # The first header author that is a person (an author may be a device).
    for name in root.findall("h:author/h:assignedAuthor/h:assignedPerson/h:name", _NS):
        given = [_text(part) for part in name.findall("h:given", _NS)]
        family = [_text(part) for part in name.findall("h:family", _NS)]
        parts = [part for part in (*given, *family) if part]
        if parts:
            return " ".join(parts)
        plain = _collapse(name.text or "")
        if plain:
            return plain
    return None


def identity_traits(content: bytes) -> IdentityTraits:
    """The patient's INS and the four identity traits the CDA header carries
    (recordTarget/patientRole: the INS id, `name/family[@qualifier='BR']`,
    `name/given[@qualifier='BR']`, `birthTime`, `administrativeGenderCode`), for
    policy.mss_headers.ins_qualified (Référentiel socle MSSanté #2 §3.8.2). `CdaError`
    if `content` is not a CDA."""
    root = _parse_root(content)
    ins = next((ext for root_oid, ext in _ids(root.findall("h:recordTarget/h:patientRole/h:id", _NS))
                if root_oid in INS_OIDS and ext), None)
    patient = root.find("h:recordTarget/h:patientRole/h:patient", _NS)
    family = given = None
    if patient is not None:
        for name in patient.findall("h:name", _NS):
            family = family or next((_text(f) for f in name.findall("h:family", _NS) if f.get("qualifier") == "BR"
                                     and _text(f)), None)
            given = given or next((_text(g) for g in name.findall("h:given", _NS) if g.get("qualifier") == "BR"
                                   and _text(g)), None)
    return IdentityTraits(
        ins=ins, birth_family=family, first_given=given,
        birth_date=_attr(patient.find("h:birthTime", _NS), "value") if patient is not None else None,
        sex=_attr(patient.find("h:administrativeGenderCode", _NS), "code") if patient is not None else None)
