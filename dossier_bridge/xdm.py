"""IHE XDM packages (`IHE_XDM.ZIP`), read for the patient's dossier (DESIGN.md §4 "Dossier").

An XDM package (IHE ITI TF-1 §16, TF-2b §3.32) is a zip holding one folder per
submission set, `IHE_XDM/SUBSETnn/`, each with a `METADATA.XML` (an XDS
`SubmitObjectsRequest` in ebRIM 3.0, ITI TF-3 §4.2) and the documents it describes.
`read_xdm` returns the documents with their metadata, and every file of the package;
deciding whether they may be delivered (policy.attachments.check_package: each file is an
attachment like any other) and whether they belong in the recipient's dossier (patientId
vs the recipient's INS) is done elsewhere.

Implementation notes (the package is hostile until proven otherwise):
- Nothing is ever written to disk and nothing is extracted by name: entries are read in
  memory, by streaming: each METADATA.XML and the documents it references through the
  `URI` slot first, then the package's other files (all of them are checked as
  attachments), each read once, all within the same running bounds.
- Declared sizes are summed first, for a cheap early refusal, but they can lie: we also
  count the bytes that really come out of the decompressor and stop as soon as one entry
  passes `zip_max_ratio` × its compressed size, or the package `zip_max_unpacked_bytes`.
  The entry count is checked on the raw central directory before `zipfile` builds one
  object per record; METADATA.XML is capped (`MAX_METADATA_BYTES`) before it becomes a
  tree, and its DocumentEntries at `zip_max_entries`.
- Any unsafe entry (absolute path, drive letter, backslash, `..`, NUL, symlink,
  encryption, unusual compression, duplicate name) refuses the whole package: a sender
  who builds one is not someone whose other files we want to guess about.
- METADATA.XML is parsed with defusedxml, DTDs refused (no entities, no XXE).
- Every failure is an `XdmError` (a `ValueError`). Its reason and the `problems` of a
  package never hold health content nor an INS: they may be logged (STYLE.md).
- A DocumentEntry whose URI names a file missing from the package, or that has no URI,
  is skipped and recorded in `XdmPackage.problems`: one bad reference should not cost
  the patient the other documents, and the caller sees what was left out. A URI that
  leaves its SUBSET folder is hostile: `XdmError`.
"""
from __future__ import annotations

import hashlib
import io
import re
import struct
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from dossier_bridge.cda import RPPS_OID, parse_hl7_ts
from policy import zipsafety
from policy.attachments import AttachmentLimits

__all__ = [
    "Coded",
    "XdmAuthor",
    "XdmDocument",
    "XdmError",
    "XdmFile",
    "XdmPackage",
    "XdmSubmissionSet",
    "Xcn",
    "Xon",
    "parse_cx",
    "parse_xcn",
    "parse_xon",
    "read_xdm",
]

# ebRIM namespaces: ebXML RegRep 3.0 (ITI TF-3 §4.2), and 2.1 of the older XDS.a metadata,
# whose Slot/Classification/ExternalIdentifier structure is the same.
LCM3_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM3_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS21_NS = "urn:oasis:names:tc:ebxml-regrep:registry:xsd:2.1"
RIM21_NS = "urn:oasis:names:tc:ebxml-regrep:rim:xsd:2.1"

# Metadata vocabulary, IHE ITI TF-3 §4.2.5 (4.2.5.1 SubmissionSet, 4.2.5.2 DocumentEntry);
# how each attribute is coded in ebRIM: ITI TF-3 §4.2.3.2 (Table 4.2.3.2-1) and §4.2.3.3.
DOCUMENT_ENTRY_STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"  # objectType
DOCUMENT_ENTRY_ON_DEMAND = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"  # never in XDM
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT_CODE_LIST = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_HEALTHCARE_FACILITY_TYPE_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE_SETTING_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"  # ExternalIdentifier
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"  # ExternalIdentifier
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"  # classificationNode
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE_CODE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"  # ExternalIdentifier
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"  # ExternalIdentifier
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"  # ExternalIdentifier
# ITI TF-3 §4.2.2 association types; ebRIM 2.1 wrote the bare name.
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"

_CHUNK = 64 * 1024
# METADATA.XML is parsed into a tree, which costs several times its size in memory. A
# real one takes a few kB per DocumentEntry; 10 MiB is far above any package that
# respects zip_max_entries, and far below what the tree of a 100 MiB file would cost.
MAX_METADATA_BYTES = 10 * 1024 * 1024
_OID_RE = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]*))+")
_V2_ESCAPE_RE = re.compile(r"\\([FSTRE])\\")
_V2_ESCAPES = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}
_SPLIT_URI_RE = re.compile(r"([0-9]+)\|(.*)", re.DOTALL)


class XdmError(ValueError):
    """The bytes are not an XDM package we accept; the message says why."""


@dataclass(frozen=True, slots=True)
class Coded:
    """A coded value of XDS metadata: Classification nodeRepresentation, the codingScheme
    Slot and the display name (ITI TF-3 §4.2.3.1, coded attributes)."""

    code: str
    scheme: str | None
    display: str | None


@dataclass(frozen=True, slots=True)
class Xcn:
    """An HL7 v2 XCN (authorPerson): `ID^Family^Given^Further^Suffix^Prefix^^^&OID&ISO^…^IDType`."""

    id: str | None
    family: str | None
    given: str | None
    further_given: str | None
    suffix: str | None
    prefix: str | None
    assigning_authority: str | None  # OID (XCN.9.2)
    id_type: str | None  # XCN.13, "IDNPS" in the CI-SIS


@dataclass(frozen=True, slots=True)
class Xon:
    """An HL7 v2 XON (authorInstitution): `Name^^^^^&OID&ISO^^^^ID`."""

    name: str | None
    id: str | None
    assigning_authority: str | None  # OID (XON.6.2)


@dataclass(frozen=True, slots=True)
class XdmAuthor:
    """One author Classification of a DocumentEntry or SubmissionSet (ITI TF-3 §4.2.3.1, authors)."""

    person: Xcn | None
    person_raw: str | None
    institutions: tuple[Xon, ...]
    roles: tuple[str, ...]
    specialties: tuple[str, ...]
    telecoms: tuple[str, ...]

    @property
    def rpps(self) -> str | None:
        """The author's idNat_PS ("8" + RPPS) when the XCN is issued under the RPPS OID."""
        if self.person is not None and self.person.assigning_authority == RPPS_OID:
            return self.person.id
        return None


@dataclass(frozen=True, slots=True)
class XdmDocument:
    """A DocumentEntry of METADATA.XML and the bytes of the file it names."""

    entry_id: str
    path: str  # zip path, as stored in the package
    content: bytes = field(repr=False)  # health content: never in a repr, never in a log
    mime_type: str | None
    title: str | None
    class_code: Coded | None
    type_code: Coded | None
    format_code: Coded | None
    practice_setting_code: Coded | None
    healthcare_facility_type_code: Coded | None
    confidentiality_codes: tuple[Coded, ...]
    creation_time: datetime | None  # UTC (XDS DTM)
    authors: tuple[XdmAuthor, ...]
    patient_id: tuple[str, str] | None  # (id, assigning authority OID)
    source_patient_id: tuple[str, str] | None
    unique_id: str | None
    declared_hash: str | None  # hex SHA-1, lower case
    declared_size: int | None
    hash_ok: bool | None  # None when no hash is declared
    size_ok: bool | None  # None when no size is declared
    sha256: str
    submission_set_id: str | None  # source of the HasMember association, if any


@dataclass(frozen=True, slots=True)
class XdmSubmissionSet:
    """The RegistryPackage classified as SubmissionSet in one SUBSET folder."""

    entry_id: str
    folder: str  # e.g. "IHE_XDM/SUBSET01"
    title: str | None
    authors: tuple[XdmAuthor, ...]
    patient_id: tuple[str, str] | None
    source_id: str | None
    unique_id: str | None
    submission_time: datetime | None
    content_type_code: Coded | None
    intended_recipients: tuple[str, ...]  # raw XON|XCN|XTN values (ITI TF-3 §4.2.3.3)


@dataclass(frozen=True, slots=True)
class XdmFile:
    """A file entry of the package, unpacked (directories are not files)."""

    path: str  # zip path, as stored in the package
    content: bytes = field(repr=False)  # health content: never in a repr, never in a log


@dataclass(frozen=True, slots=True)
class XdmPackage:
    documents: tuple[XdmDocument, ...]
    submission_sets: tuple[XdmSubmissionSet, ...]
    problems: tuple[str, ...]  # what was skipped or looked wrong, without health content
    # every file of the package, in zip order, METADATA.XML included: what the patient
    # finds when unpacking it, so what policy.attachments.check_package judges
    files: tuple[XdmFile, ...] = ()

    @property
    def title(self) -> str | None:
        """Title of the first submission set."""
        return self.submission_sets[0].title if self.submission_sets else None

    @property
    def authors(self) -> tuple[XdmAuthor, ...]:
        """Authors of the first submission set."""
        return self.submission_sets[0].authors if self.submission_sets else ()


# --- HL7 v2 data types inside XDS slots (ITI TF-3 §4.2.3.1, data types) -------------


def _v2(value: str) -> str | None:
    # HL7 v2.5 §2.7 escape sequences, undone after splitting on the delimiters.
    text = _V2_ESCAPE_RE.sub(lambda m: _V2_ESCAPES[m.group(1)], value).strip()
    return text or None


def _component(components: list[str], index: int) -> str:
    return components[index] if index < len(components) else ""


def _hd_oid(hd: str) -> str | None:
    # HD: namespace&universal id&universal id type; XDS wants the OID with type ISO.
    sub = hd.split("&")
    oid = sub[1].strip() if len(sub) > 1 else ""
    kind = sub[2].strip() if len(sub) > 2 else ""
    if not _OID_RE.fullmatch(oid) or kind not in ("", "ISO"):
        return None
    return oid


def parse_cx(value: str | None) -> tuple[str, str] | None:
    """(id, OID) of an HL7 v2 CX such as `279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH`.

    None when the value has no id or no ISO OID as assigning authority (ITI TF-3
    §4.2.3.2, DocumentEntry.patientId: a CX with CX.1 and CX.4 only). Never raises.
    """
    if not isinstance(value, str):
        return None
    components = value.strip().split("^")
    ident = _v2(components[0].split("&")[0])
    oid = _hd_oid(_component(components, 3))
    if ident is None or oid is None:
        return None
    return ident, oid


def parse_xcn(value: str | None) -> Xcn | None:
    """An HL7 v2 XCN (authorPerson, legalAuthenticator); None when empty. Never raises."""
    if not isinstance(value, str) or not value.strip():
        return None
    c = value.strip().split("^")
    result = Xcn(
        id=_v2(_component(c, 0)),
        family=_v2(_component(c, 1).split("&")[0]),  # FN.1 surname
        given=_v2(_component(c, 2)),
        further_given=_v2(_component(c, 3)),
        suffix=_v2(_component(c, 4)),
        prefix=_v2(_component(c, 5)),
        assigning_authority=_hd_oid(_component(c, 8)),
        id_type=_v2(_component(c, 12)),
    )
    if result.id is None and result.family is None and result.given is None:
        return None
    return result


def parse_xon(value: str | None) -> Xon | None:
    """An HL7 v2 XON (authorInstitution); None when empty. Never raises."""
    if not isinstance(value, str) or not value.strip():
        return None
    c = value.strip().split("^")
    # XON.10 is the identifier; XON.3 is its deprecated place, still met in the wild.
    ident = _v2(_component(c, 9)) or _v2(_component(c, 2))
    result = Xon(name=_v2(_component(c, 0)), id=ident, assigning_authority=_hd_oid(_component(c, 5)))
    if result.name is None and result.id is None:
        return None
    return result


# --- Zip layer -----------------------------------------------------------------------


def _precount_entries(data: bytes, max_entries: int) -> None:
    """Refuse too many entries, Zip64 and multi-volume archives from the raw central
    directory, before zipfile builds one ZipInfo per record (policy/zipsafety.py)."""
    problem = zipsafety.directory_problem(data, max_entries)
    if problem is None:
        return
    raise XdmError({"not_zip": "not a zip file", "bad_directory": "not a zip file (bad central directory)",
                    "zip64": "Zip64 packages are not accepted", "multi_volume": "multi-volume zip",
                    "too_many": f"too many entries in the zip (more than {max_entries})"}[problem.code])


_ENTRY_TEXT = {"nul": "NUL in its name", "backslash": "backslash in its name", "dotdot": "'..' in its path"}


def _check_entry(index: int, info: zipfile.ZipInfo) -> None:
    # Entry names are not echoed: they may carry a patient's name.
    problem = zipsafety.entry_problem(info)
    if problem is not None:
        raise XdmError(f"zip entry #{index + 1}: {_ENTRY_TEXT.get(problem.code, problem.en)}")


class _BoundedReader:
    """Reads entries in memory, counting what the decompressor really yields.

    CPython's ZipExtFile never yields more than the central directory's file_size, and
    `_read` sums those up front; the running total here is the second line, for a
    zipfile that would trust the stream instead.
    """

    def __init__(self, archive: zipfile.ZipFile, limits: AttachmentLimits) -> None:
        self._archive = archive
        self._limits = limits
        self._total = 0
        self._cache: dict[str, bytes] = {}
        self._digests: dict[str, tuple[str, str]] = {}

    def read(self, info: zipfile.ZipInfo, max_bytes: int | None = None) -> bytes:
        cached = self._cache.get(info.filename)
        if cached is not None:
            return cached
        allowed = self._limits.zip_max_ratio * max(info.compress_size, 1)
        if max_bytes is not None and info.file_size > max_bytes:
            raise XdmError(f"zip entry larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        with self._archive.open(info) as stream:
            while True:
                # ZipExtFile.read(n) asks zlib for at most ~n bytes: a bomb is stopped
                # after one chunk past the limit, never inflated whole.
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                self._total += len(chunk)
                if size > allowed:
                    raise XdmError(f"zip entry expands more than {self._limits.zip_max_ratio} times (zip bomb?)")
                if max_bytes is not None and size > max_bytes:
                    raise XdmError(f"zip entry larger than {max_bytes} bytes")
                if self._total > self._limits.zip_max_unpacked_bytes:
                    raise XdmError(f"zip unpacks to more than {self._limits.zip_max_unpacked_bytes} bytes")
                chunks.append(chunk)
        data = b"".join(chunks)
        self._cache[info.filename] = data
        return data

    def digests(self, info: zipfile.ZipInfo) -> tuple[str, str]:
        """(SHA-1, SHA-256) of an entry already read, hashed once however many
        DocumentEntries name it."""
        found = self._digests.get(info.filename)
        if found is None:
            data = self._cache[info.filename]
            # SHA-1 because XDS declares it so (DocumentEntry.hash); SHA-256 is what we keep.
            found = (hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest())
            self._digests[info.filename] = found
        return found


# --- ebRIM layer ---------------------------------------------------------------------


class _Rim:
    """Accessors over one METADATA.XML, for either ebRIM namespace."""

    def __init__(self, root: Element, ns: str) -> None:
        self.ns = ns
        self.root = root
        owner: dict[int, str] = {}
        for tag in ("ExtrinsicObject", "RegistryPackage"):
            for obj in root.iter(self.tag(tag)):
                for child in obj:
                    owner[id(child)] = obj.get("id", "")
        # ebRIM allows Classification and ExternalIdentifier nested in their object or
        # standing alone in the list and pointing at it; the SubmissionSet's own
        # classification usually stands alone (ITI TF-3 §4.2.1, SubmissionSet).
        self.classifications: dict[str, list[Element]] = defaultdict(list)
        for element in root.iter(self.tag("Classification")):
            target = element.get("classifiedObject") or owner.get(id(element))
            if target:
                self.classifications[target].append(element)
        self.identifiers: dict[str, list[Element]] = defaultdict(list)
        for element in root.iter(self.tag("ExternalIdentifier")):
            target = element.get("registryObject") or owner.get(id(element))
            if target:
                self.identifiers[target].append(element)

    def tag(self, local: str) -> str:
        return f"{{{self.ns}}}{local}"

    def slots(self, element: Element) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for slot in element.findall(self.tag("Slot")):
            name = slot.get("name")
            if name is None or name in result:
                continue  # ebRIM: slot names are unique within an object; keep the first
            values = [(v.text or "").strip() for v in slot.iter(self.tag("Value"))]
            result[name] = [v for v in values if v]
        return result

    def slot(self, element: Element, name: str) -> str | None:
        values = self.slots(element).get(name)
        return values[0] if values else None

    def name(self, element: Element) -> str | None:
        localized = element.find(f"{self.tag('Name')}/{self.tag('LocalizedString')}")
        if localized is None:
            return None
        value = " ".join((localized.get("value") or "").split())
        return value or None

    def scheme(self, object_id: str, scheme: str) -> list[Element]:
        return [c for c in self.classifications.get(object_id, []) if c.get("classificationScheme") == scheme]

    def coded(self, object_id: str, scheme: str) -> Coded | None:
        codes = self.codes(object_id, scheme)
        return codes[0] if codes else None

    def codes(self, object_id: str, scheme: str) -> tuple[Coded, ...]:
        result = []
        for element in self.scheme(object_id, scheme):
            code = (element.get("nodeRepresentation") or "").strip()
            if code:
                result.append(Coded(code=code, scheme=self.slot(element, "codingScheme"), display=self.name(element)))
        return tuple(result)

    def authors(self, object_id: str, scheme: str) -> tuple[XdmAuthor, ...]:
        result = []
        for element in self.scheme(object_id, scheme):
            slots = self.slots(element)
            person_raw = _first(slots.get("authorPerson"))
            institutions = tuple(x for x in map(parse_xon, slots.get("authorInstitution", [])) if x is not None)
            result.append(
                XdmAuthor(
                    person=parse_xcn(person_raw),
                    person_raw=person_raw,
                    institutions=institutions,
                    roles=tuple(slots.get("authorRole", [])),
                    specialties=tuple(slots.get("authorSpecialty", [])),
                    telecoms=tuple(slots.get("authorTelecommunication", [])),
                )
            )
        return tuple(result)

    def external_id(self, object_id: str, scheme: str) -> str | None:
        for element in self.identifiers.get(object_id, []):
            if element.get("identificationScheme") == scheme:
                value = (element.get("value") or "").strip()
                if value:
                    return value
        return None


# The ebRIM elements _Rim reads. Real packages declare some of them with an empty
# namespace: the ANS's published examples (ansforge TestContenuCDA) write
# `<ExtrinsicObject xmlns="" ...>`, which puts the element and its unprefixed children
# (Slot, Name, Classification...) in no namespace at all. Inside a SubmitObjectsRequest
# nothing else can be meant, so such elements are read by their local name.
_RIM_LOCAL_NAMES = frozenset({
    "RegistryObjectList", "LeafRegistryObjectList", "ExtrinsicObject", "RegistryPackage", "Association",
    "Classification", "ExternalIdentifier", "Slot", "ValueList", "Value", "Name", "Description",
    "LocalizedString", "VersionInfo", "ObjectRef",
})


def _adopt_unqualified(root: Element, ns: str) -> Element:
    """Put the ebRIM elements written without a namespace (missing or xmlns="") in
    the document's ebRIM namespace `ns`; elements of any other namespace are left."""
    for element in root.iter():
        tag = element.tag
        if isinstance(tag, str) and not tag.startswith("{") and tag in _RIM_LOCAL_NAMES:
            element.tag = f"{{{ns}}}{tag}"
    return root


def _parse_metadata(data: bytes, folder: str) -> _Rim:
    where = f"{folder}/METADATA.XML"
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise XdmError(f"{where}: forbidden XML construct ({type(exc).__name__})") from exc
    except ParseError as exc:
        raise XdmError(f"{where}: not well-formed XML") from exc
    except (ValueError, LookupError, UnicodeError, RecursionError) as exc:
        raise XdmError(f"{where}: unreadable XML") from exc
    if root.tag in (f"{{{LCM3_NS}}}SubmitObjectsRequest", f"{{{RIM3_NS}}}RegistryObjectList"):
        return _Rim(_adopt_unqualified(root, RIM3_NS), RIM3_NS)
    if root.tag in (f"{{{RS21_NS}}}SubmitObjectsRequest", f"{{{RIM21_NS}}}LeafRegistryObjectList"):
        return _Rim(_adopt_unqualified(root, RIM21_NS), RIM21_NS)
    raise XdmError(f"{where}: not an XDS SubmitObjectsRequest (ebRIM 3.0 or 2.1)")


def _uri(values: list[str]) -> str | None:
    # ITI TF-3 §4.2.3.2 (DocumentEntry.URI): a long URI may be split over several
    # Values written "1|…", "2|…".
    if len(values) > 1:
        pieces = [_SPLIT_URI_RE.fullmatch(v) for v in values]
        if all(pieces):
            ordered = sorted((int(m.group(1)), m.group(2)) for m in pieces if m)
            return "".join(text for _, text in ordered)
    return values[0] if values else None


def _safe_relative(uri: str) -> str | None:
    """The URI as a relative path inside its SUBSET folder, or None if it leaves it."""
    path = unquote(uri.strip())
    if not path or "\x00" in path or "\\" in path or ":" in path or path.startswith("/"):
        return None
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return path


def _first(values: list[str] | None) -> str | None:
    return values[0] if values else None


def _short(value: str) -> str:
    return value if len(value) <= 80 else value[:77] + "..."


def _document(
    rim: _Rim,
    element: Element,
    folder: str,
    entries: dict[str, zipfile.ZipInfo],
    reader: _BoundedReader,
    members: dict[str, str],
    problems: list[str],
) -> XdmDocument | None:
    entry_id = element.get("id") or ""
    label = f"DocumentEntry {_short(entry_id)!r}"
    slots = rim.slots(element)
    uri = _uri(slots.get("URI", []))
    if uri is None:
        problems.append(f"{label}: no URI slot; skipped")
        return None
    relative = _safe_relative(uri)
    if relative is None:
        raise XdmError(f"{label}: URI leaves its SUBSET folder")
    info = entries.get(f"{folder}/{relative}".casefold())
    if info is None or info.is_dir():
        problems.append(f"{label}: the file its URI names is not in the package; skipped")
        return None
    content = reader.read(info)
    sha1, sha256 = reader.digests(info)

    hash_text = _first(slots.get("hash"))
    declared_hash = hash_text.lower() if hash_text else None
    hash_ok = None if declared_hash is None else sha1 == declared_hash
    size_text = _first(slots.get("size"))
    declared_size = int(size_text) if size_text is not None and size_text.isascii() and size_text.isdigit() else None
    if size_text is not None and declared_size is None:
        problems.append(f"{label}: size slot is not a number")
    size_ok = None if declared_size is None else declared_size == len(content)
    if hash_ok is False:
        problems.append(f"{label}: content does not match the declared hash")
    if size_ok is False:
        problems.append(f"{label}: content does not match the declared size")

    return XdmDocument(
        entry_id=entry_id,
        path=info.filename,
        content=content,
        mime_type=(element.get("mimeType") or "").strip() or None,
        title=rim.name(element),
        class_code=rim.coded(entry_id, DE_CLASS_CODE),
        type_code=rim.coded(entry_id, DE_TYPE_CODE),
        format_code=rim.coded(entry_id, DE_FORMAT_CODE),
        practice_setting_code=rim.coded(entry_id, DE_PRACTICE_SETTING_CODE),
        healthcare_facility_type_code=rim.coded(entry_id, DE_HEALTHCARE_FACILITY_TYPE_CODE),
        confidentiality_codes=rim.codes(entry_id, DE_CONFIDENTIALITY_CODE),
        creation_time=parse_hl7_ts(rim.slot(element, "creationTime")),
        authors=rim.authors(entry_id, DE_AUTHOR),
        patient_id=parse_cx(rim.external_id(entry_id, DE_PATIENT_ID)),
        source_patient_id=parse_cx(rim.slot(element, "sourcePatientId")),
        unique_id=rim.external_id(entry_id, DE_UNIQUE_ID),
        declared_hash=declared_hash,
        declared_size=declared_size,
        hash_ok=hash_ok,
        size_ok=size_ok,
        sha256=sha256,
        submission_set_id=members.get(entry_id),
    )


def _read_subset(
    rim: _Rim,
    folder: str,
    entries: dict[str, zipfile.ZipInfo],
    reader: _BoundedReader,
    problems: list[str],
) -> tuple[list[XdmSubmissionSet], list[XdmDocument]]:
    set_ids = {
        c.get("classifiedObject") or ""
        for items in rim.classifications.values()
        for c in items
        if c.get("classificationNode") == SUBMISSION_SET_NODE
    }
    submission_sets = []
    for package in rim.root.iter(rim.tag("RegistryPackage")):
        package_id = package.get("id") or ""
        if package_id not in set_ids:
            continue  # a Folder, not a SubmissionSet
        submission_sets.append(
            XdmSubmissionSet(
                entry_id=package_id,
                folder=folder,
                title=rim.name(package),
                authors=rim.authors(package_id, SS_AUTHOR),
                patient_id=parse_cx(rim.external_id(package_id, SS_PATIENT_ID)),
                source_id=rim.external_id(package_id, SS_SOURCE_ID),
                unique_id=rim.external_id(package_id, SS_UNIQUE_ID),
                submission_time=parse_hl7_ts(rim.slot(package, "submissionTime")),
                content_type_code=rim.coded(package_id, SS_CONTENT_TYPE_CODE),
                intended_recipients=tuple(rim.slots(package).get("intendedRecipient", [])),
            )
        )
    if not submission_sets:
        problems.append(f"{folder}: no SubmissionSet in METADATA.XML")

    members: dict[str, str] = {}
    for association in rim.root.iter(rim.tag("Association")):
        kind = association.get("associationType") or ""
        source, target = association.get("sourceObject"), association.get("targetObject")
        if kind in (HAS_MEMBER, "HasMember") and source in set_ids and target:
            members.setdefault(target, source)

    documents = []
    if next(rim.root.iter(rim.tag("ExtrinsicObject")), None) is None:
        problems.append(f"{folder}: no DocumentEntry (ExtrinsicObject) in METADATA.XML")
    for element in rim.root.iter(rim.tag("ExtrinsicObject")):
        object_type = element.get("objectType")
        if object_type != DOCUMENT_ENTRY_STABLE:
            problems.append(f"ExtrinsicObject {_short(element.get('id') or '')!r}: not a stable DocumentEntry; skipped")
            continue
        document = _document(rim, element, folder, entries, reader, members, problems)
        if document is None:
            continue
        documents.append(document)
        expected = next((s.patient_id for s in submission_sets if s.entry_id == document.submission_set_id), None)
        if expected is not None and document.patient_id is not None and document.patient_id != expected:
            # XDS wants one patient per submission set; the filing decision is not ours.
            problems.append(f"DocumentEntry {_short(document.entry_id)!r}: patientId differs from its SubmissionSet")
    return submission_sets, documents


def _read(data: bytes, limits: AttachmentLimits) -> XdmPackage:
    _precount_entries(data, limits.zip_max_entries)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        if len(infos) > limits.zip_max_entries:
            raise XdmError(f"too many entries in the zip (more than {limits.zip_max_entries})")
        entries: dict[str, zipfile.ZipInfo] = {}
        declared = 0
        for index, info in enumerate(infos):
            _check_entry(index, info)
            key = info.filename.casefold()
            if key in entries:
                # Two entries that the case-insensitive lookup below cannot tell apart:
                # which one would be "the" METADATA.XML is the sender's game, not ours.
                raise XdmError(f"zip entry #{index + 1}: duplicate name")
            entries[key] = info
            declared += info.file_size
        if declared > limits.zip_max_unpacked_bytes:
            raise XdmError(f"zip declares more than {limits.zip_max_unpacked_bytes} unpacked bytes")

        # ITI TF-1 §16: IHE_XDM/<one folder per submission set>/METADATA.XML; media built
        # on FAT or ISO 9660 change the case, so the match ignores it.
        subsets: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            parts = info.filename.casefold().split("/")
            if len(parts) == 3 and parts[0] == "ihe_xdm" and parts[1] and parts[2] == "metadata.xml":
                parts = info.filename.split("/")
                subsets[f"{parts[0]}/{parts[1]}"] = info
        if not subsets:
            raise XdmError("no IHE_XDM/SUBSETnn/METADATA.XML in the package")

        reader = _BoundedReader(archive, limits)
        problems: list[str] = []
        submission_sets: list[XdmSubmissionSet] = []
        documents: list[XdmDocument] = []
        described = 0
        for folder in sorted(subsets, key=str.casefold):
            rim = _parse_metadata(reader.read(subsets[folder], MAX_METADATA_BYTES), folder)
            # Each DocumentEntry costs a lookup, a read and two hashes: no more of them
            # than the package may hold files, or a small XML could name one file 10^5 times.
            described += sum(1 for _ in rim.root.iter(rim.tag("ExtrinsicObject")))
            if described > limits.zip_max_entries:
                raise XdmError(f"more than {limits.zip_max_entries} DocumentEntries in the package")
            found_sets, found_documents = _read_subset(rim, folder, entries, reader, problems)
            submission_sets.extend(found_sets)
            documents.extend(found_documents)
        # then every other file, under the same running bounds: a file no DocumentEntry
        # names is still in the patient's copy of the package (issue 10 §4)
        files = tuple(XdmFile(info.filename, reader.read(info)) for info in infos if not info.is_dir())
    return XdmPackage(documents=tuple(documents), submission_sets=tuple(submission_sets), problems=tuple(problems),
                      files=files)


def read_xdm(content: bytes, limits: AttachmentLimits) -> XdmPackage:
    """Read an IHE XDM package from memory; `XdmError` with a reason if it is refused."""
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise XdmError("XDM content must be bytes")
    try:
        return _read(bytes(content), limits)
    except XdmError:
        raise
    except (
        zipfile.BadZipFile,  # bad structure, CRC mismatch (sizes that lied), header/name mismatch
        zipfile.LargeZipFile,
        NotImplementedError,  # zip version or feature zipfile does not know
        RuntimeError,
        EOFError,  # truncated entry data
        OSError,
        zlib.error,  # corrupt deflate stream
        struct.error,
        ValueError,  # e.g. a name flagged UTF-8 that is not
        OverflowError,
    ) as exc:
        # The type only: zipfile's messages quote entry names, which may name a patient.
        raise XdmError(f"unreadable zip ({type(exc).__module__}.{type(exc).__name__})") from exc
