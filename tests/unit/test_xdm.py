"""dossier_bridge/xdm.py: IHE XDM packages (IHE_XDM.ZIP), read in memory and bounded."""
from __future__ import annotations

import hashlib
import io
import stat
import struct
import tracemalloc
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dossier_bridge.cda import RPPS_OID, parse_cda
from dossier_bridge.xdm import (DE_AUTHOR, DE_CLASS_CODE, DE_CONFIDENTIALITY_CODE, DE_FORMAT_CODE,
                                DE_HEALTHCARE_FACILITY_TYPE_CODE, DE_PATIENT_ID, DE_PRACTICE_SETTING_CODE,
                                DE_TYPE_CODE, DE_UNIQUE_ID, DOCUMENT_ENTRY_STABLE, HAS_MEMBER, SS_AUTHOR,
                                SS_CONTENT_TYPE_CODE, SS_PATIENT_ID, SS_SOURCE_ID, SS_UNIQUE_ID, SUBMISSION_SET_NODE,
                                Coded, XdmError, Xcn, Xon, parse_cx, parse_xcn, parse_xon, read_xdm)
from policy.attachments import AttachmentLimits
from tests.examples import examples

# the shared folder sits beside the repository: /work/shared and /work/main
CDA_DIR = Path(__file__).resolve().parents[3] / "shared/data/cda"
LDL_SES = (CDA_DIR / "LDL-SES_2022.01.xml").read_bytes()
BIOLOGY = (CDA_DIR / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes()
CSE_CS8 = (CDA_DIR / "CSE-CS8_2024.01.xml").read_bytes()

LIMITS = AttachmentLimits()
MIB = 1024 * 1024

INS_TEST_OID = "1.2.250.1.213.1.4.10"
INS_NIR_OID = "1.2.250.1.213.1.4.8"
PATIENT = f"279035121518989^^^&{INS_TEST_OID}&ISO^NH"
OTHER_PATIENT = f"223042545611404^^^&{INS_NIR_OID}&ISO^NH"
AUTHOR_PERSON = f"810002909371^DUPONT^JEAN^^^DR^^^&{RPPS_OID}&ISO"
AUTHOR_INSTITUTION = "Hôpital Européen Georges Pompidou^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^11750803447"
AUTHOR_ROLE = "Médecin^^^&1.2.250.1.213.1.1.4.6&ISO"
AUTHOR_SPECIALTY = "G15_10/SM27^Médecin - Médecine interne (SM)^1.2.250.1.213.1.1.4.5"
LOINC = "2.16.840.1.113883.6.1"
CLASS_CR = ("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
CLASS_CERT = ("60", "1.2.250.1.213.1.1.4.1", "Certificat")
FORMAT_LDL = ("urn:asip:ci-sis:ldl-ses:2022", "1.2.250.1.213.1.1.4.2.282", "Lettre de liaison de sortie")
FORMAT_PDF = ("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "Document à corps non structuré en Pdf")
FORMAT_CSE = ("urn:asip:ci-sis:cse-cs8:2024", "1.2.250.1.213.1.1.4.2.282", "Certificat de santé (8e jour)")

CLASSIFICATION = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"
EXTERNAL_ID = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier"


# --- building METADATA.XML the way XDM writers do (ebRIM 3.0, ITI TF-3 §4.2) ------------


@dataclass
class Entry:
    """One DocumentEntry and its file."""

    entry_id: str
    uri: str | None
    content: bytes
    title: str
    type_code: tuple[str, str, str]
    class_code: tuple[str, str, str] = CLASS_CR
    format_code: tuple[str, str, str] = FORMAT_LDL
    patient: str = PATIENT
    mime_type: str = "text/xml"
    creation_time: str = "20191203123000"
    hash: str | None = "auto"  # "auto": the right SHA-1; None: no slot
    size: str | None = "auto"
    unique_id: str = "1.2.250.1.999.1.1"
    object_type: str = DOCUMENT_ENTRY_STABLE
    uri_values: list[str] = field(default_factory=list)  # several Values for one URI


def slot(name: str, *values: str) -> str:
    inner = "".join(f"<rim:Value>{escape(v)}</rim:Value>" for v in values)
    return f'<rim:Slot name="{name}"><rim:ValueList>{inner}</rim:ValueList></rim:Slot>'


def name(value: str) -> str:
    return f"<rim:Name><rim:LocalizedString charset=\"UTF-8\" xml:lang=\"fr-FR\" value={quoteattr(value)}/></rim:Name>"


def coded(scheme: str, obj: str, cid: str, code: tuple[str, str, str]) -> str:
    return (
        f'<rim:Classification classificationScheme="{scheme}" classifiedObject="{obj}" id="{cid}" '
        f'nodeRepresentation={quoteattr(code[0])} objectType="{CLASSIFICATION}">'
        f"{slot('codingScheme', code[1])}{name(code[2])}</rim:Classification>"
    )


def author(scheme: str, obj: str, cid: str) -> str:
    return (
        f'<rim:Classification classificationScheme="{scheme}" classifiedObject="{obj}" id="{cid}" '
        f'nodeRepresentation="" objectType="{CLASSIFICATION}">'
        f"{slot('authorPerson', AUTHOR_PERSON)}{slot('authorInstitution', AUTHOR_INSTITUTION)}"
        f"{slot('authorRole', AUTHOR_ROLE)}{slot('authorSpecialty', AUTHOR_SPECIALTY)}"
        f"{slot('authorTelecommunication', '^^Internet^jean.dupont@hegp.mssante.fr')}"
        "</rim:Classification>"
    )


def external_id(scheme: str, obj: str, eid: str, value: str, label: str) -> str:
    return (
        f'<rim:ExternalIdentifier id="{eid}" identificationScheme="{scheme}" objectType="{EXTERNAL_ID}" '
        f'registryObject="{obj}" value={quoteattr(value)}>{name(label)}</rim:ExternalIdentifier>'
    )


def extrinsic(entry: Entry) -> str:
    e = entry.entry_id
    slots = [slot("creationTime", entry.creation_time)]
    if entry.hash is not None:
        slots.append(slot("hash", hashlib.sha1(entry.content).hexdigest() if entry.hash == "auto" else entry.hash))
    slots.append(slot("languageCode", "fr-FR"))
    slots.append(slot("legalAuthenticator", AUTHOR_PERSON))
    slots.append(slot("serviceStartTime", "20191201080000"))
    if entry.size is not None:
        slots.append(slot("size", str(len(entry.content)) if entry.size == "auto" else entry.size))
    slots.append(slot("sourcePatientId", PATIENT if entry.patient == PATIENT else entry.patient))
    slots.append(slot("sourcePatientInfo", "PID-3|279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH",
                      "PID-5|PAT-TROIS^DOMINIQUE^^^^^L", "PID-7|19790328", "PID-8|F"))
    if entry.uri_values:
        slots.append(slot("URI", *entry.uri_values))
    elif entry.uri is not None:
        slots.append(slot("URI", entry.uri))
    return (
        f'<rim:ExtrinsicObject id="{e}" mimeType="{entry.mime_type}" objectType="{entry.object_type}" '
        'status="urn:oasis:names:tc:ebxml-regrep:StatusType:Approved">'
        + "".join(slots)
        + name(entry.title)
        + author(DE_AUTHOR, e, f"{e}-author")
        + coded(DE_CLASS_CODE, e, f"{e}-class", entry.class_code)
        + coded(DE_CONFIDENTIALITY_CODE, e, f"{e}-conf", ("N", "2.16.840.1.113883.5.25", "Normal"))
        + coded(DE_FORMAT_CODE, e, f"{e}-format", entry.format_code)
        + coded(DE_HEALTHCARE_FACILITY_TYPE_CODE, e, f"{e}-hcf",
                ("SA01", "1.2.250.1.71.4.2.4", "Etablissement public de santé"))
        + coded(DE_PRACTICE_SETTING_CODE, e, f"{e}-ps", ("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9", "Etablissement"))
        + coded(DE_TYPE_CODE, e, f"{e}-type", entry.type_code)
        + external_id(DE_PATIENT_ID, e, f"{e}-pid", entry.patient, "XDSDocumentEntry.patientId")
        + external_id(DE_UNIQUE_ID, e, f"{e}-uid", entry.unique_id, "XDSDocumentEntry.uniqueId")
        + "</rim:ExtrinsicObject>"
    )


def metadata(entries: list[Entry], ss_id: str = "SubmissionSet01", ss_title: str = "Sortie d'hospitalisation") -> bytes:
    ss = (
        f'<rim:RegistryPackage id="{ss_id}" objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:'
        'RegistryPackage">'
        + slot("submissionTime", "20240115103000")
        + slot("intendedRecipient", "|^^Internet^279035121518989@patient.mssante.fr")
        + name(ss_title)
        + author(SS_AUTHOR, ss_id, f"{ss_id}-author")
        + coded(SS_CONTENT_TYPE_CODE, ss_id, f"{ss_id}-ct", ("04", "1.2.250.1.213.1.1.4.4", "Hospitalisation"))
        + external_id(SS_UNIQUE_ID, ss_id, f"{ss_id}-uid", "1.2.250.1.999.2.20240115103000",
                      "XDSSubmissionSet.uniqueId")
        + external_id(SS_SOURCE_ID, ss_id, f"{ss_id}-src", "1.2.250.1.999", "XDSSubmissionSet.sourceId")
        + external_id(SS_PATIENT_ID, ss_id, f"{ss_id}-pid", PATIENT, "XDSSubmissionSet.patientId")
        + "</rim:RegistryPackage>"
        # The SubmissionSet's own classification stands alone in the list, as writers do.
        + f'<rim:Classification classificationNode="{SUBMISSION_SET_NODE}" classifiedObject="{ss_id}" '
        f'id="{ss_id}-node" objectType="{CLASSIFICATION}"/>'
    )
    associations = "".join(
        f'<rim:Association associationType="{HAS_MEMBER}" id="as-{e.entry_id}" objectType="urn:oasis:names:tc:'
        f'ebxml-regrep:ObjectType:RegistryObject:Association" sourceObject="{ss_id}" targetObject="{e.entry_id}">'
        f"{slot('SubmissionSetStatus', 'Original')}</rim:Association>"
        for e in entries
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" '
        'xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">'
        "<rim:RegistryObjectList>" + ss + "".join(extrinsic(e) for e in entries) + associations
        + "</rim:RegistryObjectList></lcm:SubmitObjectsRequest>"
    ).encode()


INDEX_HTM = b"<html><body><a href='README.TXT'>README.TXT</a> <a href='IHE_XDM/SUBSET01/'>SUBSET01</a></body></html>"
README_TXT = b"Editeur: Exemple SA\r\nLogiciel: DPI 1.0\r\nContenu: documents de sortie\r\n"


def zip_bytes(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED, dirs: bool = True) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        if dirs:
            archive.writestr("IHE_XDM/", b"")
            archive.writestr("IHE_XDM/SUBSET01/", b"")
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def package(entries: list[Entry], folder: str = "IHE_XDM/SUBSET01", extra: dict[str, bytes] | None = None,
            compression: int = zipfile.ZIP_DEFLATED, meta: bytes | None = None) -> bytes:
    files = {"INDEX.HTM": INDEX_HTM, "README.TXT": README_TXT,
             f"{folder}/METADATA.XML": metadata(entries) if meta is None else meta}
    for entry in entries:
        if entry.uri is not None and not entry.uri_values:
            files.setdefault(f"{folder}/{entry.uri}", entry.content)
    files.update(extra or {})
    return zip_bytes(files, compression)


def ldl_entry(**changes: object) -> Entry:
    base: dict[str, object] = dict(
        entry_id="Document01", uri="DOC0001.XML", content=LDL_SES,
        title="Lettre de liaison à la sortie de l'établissement de santé",
        type_code=("11490-0", LOINC, "Lettre de liaison à la sortie d'un établissement de soins"),
        unique_id="1.2.250.1.999.1.1.1",
    )
    base.update(changes)
    return Entry(**base)  # type: ignore[arg-type]


def biology_entry(**changes: object) -> Entry:
    base: dict[str, object] = dict(
        entry_id="Document02", uri="DOC0002.XML", content=BIOLOGY, title="Compte rendu d'examens biologiques",
        type_code=("11502-2", LOINC, "CR d'examens biologiques"), format_code=FORMAT_PDF,
        creation_time="20210401124745", unique_id="1.2.250.1.999.1.1.2",
    )
    base.update(changes)
    return Entry(**base)  # type: ignore[arg-type]


def certificate_entry(**changes: object) -> Entry:
    base: dict[str, object] = dict(
        entry_id="Document03", uri="DOC0003.XML", content=CSE_CS8,
        title="Premier certificat de santé",
        type_code=("CERT_DECL", "1.2.250.1.213.1.1.4.12", "Certificat, déclaration"),
        class_code=CLASS_CERT, format_code=FORMAT_CSE, patient=OTHER_PATIENT, creation_time="20210503104500",
        unique_id="1.2.250.1.999.1.1.3",
    )
    base.update(changes)
    return Entry(**base)  # type: ignore[arg-type]


# --- zip surgery ---------------------------------------------------------------------


def central_records(data: bytes) -> dict[str, int]:
    """Offset of each central directory record, by name."""
    eocd = data.rfind(b"PK\x05\x06")
    size_cd, offset_cd = struct.unpack("<II", data[eocd + 12:eocd + 20])
    records = {}
    offset = offset_cd
    while offset < offset_cd + size_cd:
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[offset + 28:offset + 34])
        records[data[offset + 46:offset + 46 + name_len].decode("cp437")] = offset
        offset += 46 + name_len + extra_len + comment_len
    return records


def patch_central(data: bytes, entry: str, at: int, fmt: str, value: int) -> bytes:
    offset = central_records(data)[entry] + at
    return data[:offset] + struct.pack(fmt, value) + data[offset + struct.calcsize(fmt):]


CD_FLAGS, CD_FILE_SIZE, CD_EXTERNAL_ATTR = 8, 24, 38


# --- the happy path ------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_documents() -> bytes:
    return package([ldl_entry(), biology_entry(), certificate_entry()])


def test_documents_and_their_metadata(three_documents: bytes) -> None:
    result = read_xdm(three_documents, LIMITS)
    assert [d.entry_id for d in result.documents] == ["Document01", "Document02", "Document03"]
    ldl, biology, certificate = result.documents

    assert ldl.path == "IHE_XDM/SUBSET01/DOC0001.XML"
    assert ldl.content == LDL_SES
    assert ldl.mime_type == "text/xml"
    assert ldl.title == "Lettre de liaison à la sortie de l'établissement de santé"
    assert ldl.class_code == Coded("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
    assert ldl.type_code == Coded("11490-0", LOINC, "Lettre de liaison à la sortie d'un établissement de soins")
    assert ldl.format_code == Coded(*FORMAT_LDL)
    assert ldl.practice_setting_code == Coded("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9", "Etablissement")
    assert ldl.healthcare_facility_type_code == Coded("SA01", "1.2.250.1.71.4.2.4", "Etablissement public de santé")
    assert ldl.confidentiality_codes == (Coded("N", "2.16.840.1.113883.5.25", "Normal"),)
    assert ldl.creation_time == datetime(2019, 12, 3, 12, 30, tzinfo=timezone.utc)
    assert ldl.patient_id == ("279035121518989", INS_TEST_OID)
    assert ldl.source_patient_id == ("279035121518989", INS_TEST_OID)
    assert ldl.unique_id == "1.2.250.1.999.1.1.1"
    assert ldl.declared_hash == hashlib.sha1(LDL_SES).hexdigest()
    assert ldl.declared_size == len(LDL_SES)
    assert ldl.hash_ok is True and ldl.size_ok is True
    assert ldl.sha256 == hashlib.sha256(LDL_SES).hexdigest()
    assert ldl.submission_set_id == "SubmissionSet01"

    (person,) = ldl.authors
    assert person.person == Xcn(id="810002909371", family="DUPONT", given="JEAN", further_given=None, suffix=None,
                                prefix="DR", assigning_authority=RPPS_OID, id_type=None)
    assert person.person_raw == AUTHOR_PERSON
    assert person.rpps == "810002909371"
    assert person.institutions == (Xon("Hôpital Européen Georges Pompidou", "11750803447", "1.2.250.1.71.4.2.2"),)
    assert person.roles == (AUTHOR_ROLE,)
    assert person.specialties == (AUTHOR_SPECIALTY,)
    assert person.telecoms == ("^^Internet^jean.dupont@hegp.mssante.fr",)

    assert biology.content == BIOLOGY
    assert biology.type_code == Coded("11502-2", LOINC, "CR d'examens biologiques")
    assert biology.format_code == Coded(*FORMAT_PDF)
    assert biology.creation_time == datetime(2021, 4, 1, 12, 47, 45, tzinfo=timezone.utc)

    # A document for another patient is reported as it is: deciding is policy's job.
    assert certificate.patient_id == ("223042545611404", INS_NIR_OID)
    assert certificate.class_code == Coded(*CLASS_CERT)
    assert certificate.hash_ok is True
    assert result.problems == ("DocumentEntry 'Document03': patientId differs from its SubmissionSet",)

    # The metadata agrees with the CDA headers of the real documents.
    for document in result.documents:
        header = parse_cda(document.content)
        assert document.patient_id is not None and header.ins_ids == (document.patient_id[0],)
        assert document.type_code is not None and header.code == document.type_code.code


def test_submission_set(three_documents: bytes) -> None:
    result = read_xdm(three_documents, LIMITS)
    (ss,) = result.submission_sets
    assert ss.entry_id == "SubmissionSet01"
    assert ss.folder == "IHE_XDM/SUBSET01"
    assert ss.title == result.title == "Sortie d'hospitalisation"
    assert ss.authors == result.authors
    assert ss.authors[0].rpps == "810002909371"
    assert ss.patient_id == ("279035121518989", INS_TEST_OID)
    assert ss.source_id == "1.2.250.1.999"
    assert ss.unique_id == "1.2.250.1.999.2.20240115103000"
    assert ss.submission_time == datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
    assert ss.content_type_code == Coded("04", "1.2.250.1.213.1.1.4.4", "Hospitalisation")
    assert ss.intended_recipients == ("|^^Internet^279035121518989@patient.mssante.fr",)


def test_no_health_content_in_repr_or_problems(three_documents: bytes) -> None:
    result = read_xdm(three_documents, LIMITS)
    assert "ClinicalDocument" not in repr(result)
    for problem in result.problems:
        assert "279035121518989" not in problem and "223042545611404" not in problem


def test_stored_entries() -> None:
    result = read_xdm(package([ldl_entry()], compression=zipfile.ZIP_STORED), LIMITS)
    assert result.documents[0].content == LDL_SES


def test_case_insensitive_paths() -> None:
    entry = ldl_entry(uri="doc0001.xml")
    data = zip_bytes({"ihe_xdm/subset01/metadata.xml": metadata([entry]), "IHE_XDM/SUBSET01/DOC0001.XML": LDL_SES},
                     dirs=False)
    (document,) = read_xdm(data, LIMITS).documents
    assert document.path == "IHE_XDM/SUBSET01/DOC0001.XML"
    assert document.content == LDL_SES


def test_uri_in_a_sub_folder_and_percent_encoded() -> None:
    entry = ldl_entry(uri="DOCS/LETTRE%20SORTIE.XML")
    data = package([entry], extra={"IHE_XDM/SUBSET01/DOCS/LETTRE SORTIE.XML": LDL_SES})
    (document,) = read_xdm(data, LIMITS).documents
    assert document.path == "IHE_XDM/SUBSET01/DOCS/LETTRE SORTIE.XML"


def test_uri_split_over_several_values() -> None:
    entry = ldl_entry(uri_values=["2|0001.XML", "1|DOC"])
    data = package([entry], extra={"IHE_XDM/SUBSET01/DOC0001.XML": LDL_SES})
    assert read_xdm(data, LIMITS).documents[0].path == "IHE_XDM/SUBSET01/DOC0001.XML"


def test_several_subsets_read_in_order() -> None:
    first, second = ldl_entry(), biology_entry(entry_id="Document01b", uri="DOC0001.XML")
    files = {
        "IHE_XDM/SUBSET02/METADATA.XML": metadata([second], ss_id="SubmissionSet02", ss_title="Biologie"),
        "IHE_XDM/SUBSET02/DOC0001.XML": BIOLOGY,
        "IHE_XDM/SUBSET01/METADATA.XML": metadata([first]),
        "IHE_XDM/SUBSET01/DOC0001.XML": LDL_SES,
    }
    result = read_xdm(zip_bytes(files), LIMITS)
    assert [(d.path, d.submission_set_id) for d in result.documents] == [
        ("IHE_XDM/SUBSET01/DOC0001.XML", "SubmissionSet01"),
        ("IHE_XDM/SUBSET02/DOC0001.XML", "SubmissionSet02"),
    ]
    assert [s.folder for s in result.submission_sets] == ["IHE_XDM/SUBSET01", "IHE_XDM/SUBSET02"]
    assert result.title == "Sortie d'hospitalisation"
    assert result.documents[1].content == BIOLOGY


def test_missing_file_is_skipped_and_recorded() -> None:
    entries = [ldl_entry(), biology_entry(uri=None), certificate_entry(patient=PATIENT)]
    # The certificate's DocumentEntry is there, its file is not.
    data = zip_bytes({"IHE_XDM/SUBSET01/METADATA.XML": metadata(entries), "IHE_XDM/SUBSET01/DOC0001.XML": LDL_SES})
    result = read_xdm(data, LIMITS)
    assert [d.entry_id for d in result.documents] == ["Document01"]
    assert result.problems == (
        "DocumentEntry 'Document02': no URI slot; skipped",
        "DocumentEntry 'Document03': the file its URI names is not in the package; skipped",
    )


def test_hash_and_size_checked_against_the_content() -> None:
    result = read_xdm(package([ldl_entry(hash="00" * 20, size="12"), biology_entry(hash=None, size=None)]), LIMITS)
    wrong, undeclared = result.documents
    assert (wrong.hash_ok, wrong.size_ok, wrong.declared_size) == (False, False, 12)
    assert (undeclared.hash_ok, undeclared.size_ok, undeclared.declared_hash) == (None, None, None)
    assert result.problems == (
        "DocumentEntry 'Document01': content does not match the declared hash",
        "DocumentEntry 'Document01': content does not match the declared size",
    )
    upper = read_xdm(package([ldl_entry(hash=hashlib.sha1(LDL_SES).hexdigest().upper())]), LIMITS)
    assert upper.documents[0].hash_ok is True


def test_extrinsic_object_that_is_not_a_document_entry() -> None:
    odd = biology_entry(object_type="urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248")
    result = read_xdm(package([ldl_entry(), odd]), LIMITS)
    assert [d.entry_id for d in result.documents] == ["Document01"]
    assert result.problems == ("ExtrinsicObject 'Document02': not a stable DocumentEntry; skipped",)


def test_ebrim_2_1_metadata() -> None:
    meta = (metadata([ldl_entry()]).decode()
            .replace("urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0", "urn:oasis:names:tc:ebxml-regrep:registry:xsd:2.1")
            .replace("urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0", "urn:oasis:names:tc:ebxml-regrep:rim:xsd:2.1")
            .replace("rim:RegistryObjectList", "rim:LeafRegistryObjectList")
            .replace(HAS_MEMBER, "HasMember"))
    result = read_xdm(package([ldl_entry()], meta=meta.encode()), LIMITS)
    (document,) = result.documents
    assert document.patient_id == ("279035121518989", INS_TEST_OID)
    assert document.type_code is not None and document.type_code.code == "11490-0"
    assert document.submission_set_id == "SubmissionSet01"


def test_metadata_that_is_not_xds_refused() -> None:
    with pytest.raises(XdmError, match="not an XDS SubmitObjectsRequest"):
        read_xdm(package([ldl_entry()], meta=LDL_SES), LIMITS)


# --- HL7 v2 values -------------------------------------------------------------------


def test_parse_cx() -> None:
    assert parse_cx(PATIENT) == ("279035121518989", INS_TEST_OID)
    assert parse_cx("279035121518989^^^&1.2.250.1.213.1.4.10&ISO") == ("279035121518989", INS_TEST_OID)
    assert parse_cx(" IPP\\S\\42^^^HOSP&1.2.250.1.999&ISO^PI ") == ("IPP^42", "1.2.250.1.999")
    for bad in [None, "", "279035121518989", "279035121518989^^^&&ISO", "^^^&1.2.250.1.213.1.4.10&ISO",
                "279035121518989^^^&1.2.250.1.213.1.4.10&DNS", "279035121518989^^^&not.an.oid&ISO",
                "279035121518989^^^&1.02.3&ISO"]:
        assert parse_cx(bad) is None, bad


def test_parse_xcn_and_xon() -> None:
    assert parse_xcn(f"801234567897^MULLER^CHARLES^^^^^^&{RPPS_OID}&ISO^D^^^IDNPS") == Xcn(
        "801234567897", "MULLER", "CHARLES", None, None, None, RPPS_OID, "IDNPS")
    assert parse_xcn("^DUPONT&VAN^JEAN^PIERRE^III^DR") == Xcn(None, "DUPONT", "JEAN", "PIERRE", "III", "DR", None, None)
    assert parse_xcn("^^^") is None and parse_xcn("") is None and parse_xcn(None) is None
    assert parse_xon("Cabinet du Dr Dupont") == Xon("Cabinet du Dr Dupont", None, None)
    assert parse_xon("Clinique^^1750803447") == Xon("Clinique", "1750803447", None)
    assert parse_xon("^^^^^^") is None


@given(st.text(alphabet=st.sampled_from("^&\\~|FSTRE0123.ab \x00é"), max_size=60))
def test_hl7_v2_parsers_never_raise(value: str) -> None:
    parse_cx(value)
    parse_xcn(value)
    parse_xon(value)


# --- hostile packages ----------------------------------------------------------------


def zero_bomb(megabytes: int) -> bytes:
    """An XDM package whose document is `megabytes` MiB of zeros, deflated (about 1:1000)."""
    entry = ldl_entry(content=b"", hash=None, size=None)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("IHE_XDM/SUBSET01/METADATA.XML", metadata([entry]))
        with archive.open("IHE_XDM/SUBSET01/DOC0001.XML", "w") as stream:
            chunk = bytes(MIB)
            for _ in range(megabytes):
                stream.write(chunk)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb_200() -> bytes:
    return zero_bomb(200)


def test_zip_bomb_refused_by_declared_size(bomb_200: bytes) -> None:
    assert len(bomb_200) < 1 * MIB
    with pytest.raises(XdmError, match="declares more than"):
        read_xdm(bomb_200, LIMITS)


def test_zip_bomb_refused_by_ratio_without_inflating_it(bomb_200: bytes) -> None:
    # With a total budget the bomb fits in, only the ratio can stop it, while streaming.
    roomy = AttachmentLimits(zip_max_unpacked_bytes=1024 * MIB)
    tracemalloc.start()
    try:
        with pytest.raises(XdmError, match="expands more than 100 times"):
            read_xdm(bomb_200, roomy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * MIB  # 100 × ~200 KB compressed, not 200 MB


def test_small_zip_bomb_refused_by_ratio_with_default_limits() -> None:
    with pytest.raises(XdmError, match="expands more than"):
        read_xdm(zero_bomb(20), LIMITS)


def test_lying_central_directory(bomb_200: bytes) -> None:
    # The central directory says 1000 bytes; 200 MB come out of the deflate stream.
    lying = patch_central(bomb_200, "IHE_XDM/SUBSET01/DOC0001.XML", CD_FILE_SIZE, "<I", 1000)
    with pytest.raises(XdmError):
        read_xdm(lying, LIMITS)
    small = package([ldl_entry()])
    lying = patch_central(small, "IHE_XDM/SUBSET01/DOC0001.XML", CD_FILE_SIZE, "<I", 10)
    with pytest.raises(XdmError, match="BadZipFile"):  # zipfile stops at 10 bytes: CRC mismatch
        read_xdm(lying, LIMITS)


def test_total_unpacked_bound() -> None:
    # Sizes count whether or not the entry is read (INDEX.HTM, README.TXT, METADATA.XML).
    tight = AttachmentLimits(zip_max_unpacked_bytes=len(LDL_SES) + len(BIOLOGY))
    with pytest.raises(XdmError, match="declares more than"):
        read_xdm(package([ldl_entry(), biology_entry()]), tight)


def test_too_many_entries() -> None:
    files = {f"IHE_XDM/SUBSET01/F{i:03}.TXT": b"x" for i in range(LIMITS.zip_max_entries)}
    files["IHE_XDM/SUBSET01/METADATA.XML"] = metadata([])
    with pytest.raises(XdmError, match="too many entries"):
        read_xdm(zip_bytes(files, dirs=False), LIMITS)
    # Exactly at the limit is fine.
    del files["IHE_XDM/SUBSET01/F000.TXT"]
    assert read_xdm(zip_bytes(files, dirs=False), LIMITS).documents == ()


def test_too_many_entries_behind_a_lying_end_record() -> None:
    files = {f"F{i:04}": b"" for i in range(500)}
    files["IHE_XDM/SUBSET01/METADATA.XML"] = metadata([])
    data = zip_bytes(files, dirs=False)
    eocd = data.rfind(b"PK\x05\x06")
    data = data[:eocd + 8] + struct.pack("<HH", 1, 1) + data[eocd + 12:]  # "1 entry"
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == 501  # zipfile ignores the count
    with pytest.raises(XdmError, match="too many entries"):
        read_xdm(data, LIMITS)


@pytest.mark.parametrize(
    ("entry_name", "reason"),
    [("../../x", r"'\.\.'"), ("IHE_XDM/../../x", r"'\.\.'"), ("/etc/passwd", "absolute"), ("C:/x.txt", "drive"),
     ("c:x.txt", "drive"), ("IHE_XDM\\SUBSET01\\x", "backslash")],
)
def test_unsafe_entry_names(entry_name: str, reason: str) -> None:
    data = package([ldl_entry()], extra={entry_name: b"x"})
    assert entry_name in zipfile.ZipFile(io.BytesIO(data)).namelist()
    with pytest.raises(XdmError, match=reason):
        read_xdm(data, LIMITS)


def test_nul_in_entry_name() -> None:
    data = package([ldl_entry()], extra={"NULHERE.TXT": b"x"}).replace(b"NULHERE", b"NUL\x00ERE")
    with pytest.raises(XdmError, match="NUL"):
        read_xdm(data, LIMITS)


def test_symlink_entry() -> None:
    data = package([ldl_entry()], extra={"LINK": b"/etc/passwd"})
    data = patch_central(data, "LINK", CD_EXTERNAL_ATTR, "<I", (stat.S_IFLNK | 0o777) << 16)
    with pytest.raises(XdmError, match="symbolic link"):
        read_xdm(data, LIMITS)


def test_encrypted_entry() -> None:
    data = patch_central(package([ldl_entry()]), "IHE_XDM/SUBSET01/DOC0001.XML", CD_FLAGS, "<H", 0x1)
    with pytest.raises(XdmError, match="encrypted"):
        read_xdm(data, LIMITS)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_other_compression_methods(method: int) -> None:
    with pytest.raises(XdmError, match="compression method"):
        read_xdm(package([ldl_entry()], compression=method), LIMITS)


def test_duplicate_names() -> None:
    data = package([ldl_entry()], extra={"ihe_xdm/subset01/metadata.xml": metadata([biology_entry()])})
    with pytest.raises(XdmError, match="duplicate"):
        read_xdm(data, LIMITS)


@pytest.mark.parametrize(
    "uri",
    ["../../etc/passwd", "../SUBSET02/DOC0001.XML", "/etc/passwd", "file:///etc/passwd", "C:DOC0001.XML",
     "%2e%2e/%2e%2e/etc/passwd", "..\\..\\etc\\passwd", "DOCS//DOC0001.XML", "./DOC0001.XML", "DOC0001.XML%00"],
)
def test_uri_leaving_its_subset(uri: str) -> None:
    files = {"IHE_XDM/SUBSET01/METADATA.XML": metadata([ldl_entry(uri=uri)]), "IHE_XDM/SUBSET01/DOC0001.XML": LDL_SES,
             "IHE_XDM/SUBSET02/DOC0001.XML": LDL_SES}
    with pytest.raises(XdmError, match="URI leaves its SUBSET folder"):
        read_xdm(zip_bytes(files), LIMITS)


XXE_METADATA = b"""<?xml version="1.0"?>
<!DOCTYPE lcm:SubmitObjectsRequest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
  xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"><rim:RegistryObjectList>
  <rim:RegistryPackage id="ss">&xxe;</rim:RegistryPackage></rim:RegistryObjectList></lcm:SubmitObjectsRequest>"""

LAUGHS_METADATA = b"""<?xml version="1.0"?>
<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">&c;</lcm:SubmitObjectsRequest>"""


@pytest.mark.parametrize("meta", [XXE_METADATA, LAUGHS_METADATA], ids=["xxe", "laughs"])
def test_metadata_with_dtd_refused(meta: bytes) -> None:
    with pytest.raises(XdmError, match="forbidden XML construct"):
        read_xdm(package([ldl_entry()], meta=meta), LIMITS)


def test_metadata_not_well_formed() -> None:
    with pytest.raises(XdmError, match="not well-formed"):
        read_xdm(package([ldl_entry()], meta=metadata([ldl_entry()])[:-40]), LIMITS)


def test_missing_metadata() -> None:
    with pytest.raises(XdmError, match="no IHE_XDM/SUBSETnn/METADATA.XML"):
        read_xdm(zip_bytes({"INDEX.HTM": INDEX_HTM, "IHE_XDM/SUBSET01/DOC0001.XML": LDL_SES}), LIMITS)
    with pytest.raises(XdmError, match="no IHE_XDM/SUBSETnn/METADATA.XML"):  # not in IHE_XDM/
        read_xdm(zip_bytes({"SUBSET01/METADATA.XML": metadata([ldl_entry()])}, dirs=False), LIMITS)
    with pytest.raises(XdmError, match="no IHE_XDM/SUBSETnn/METADATA.XML"):  # one level too deep
        read_xdm(zip_bytes({"IHE_XDM/SUBSET01/X/METADATA.XML": metadata([ldl_entry()])}), LIMITS)


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage", b"PK\x03\x04" + bytes(100), b"PK\x05\x06" + bytes(18), LDL_SES, bytes(range(256)) * 10],
    ids=["empty", "text", "local-header-only", "empty-end-record", "xml", "binary"],
)
def test_garbage_refused(content: bytes) -> None:
    with pytest.raises(XdmError):
        read_xdm(content, LIMITS)


def test_truncated_zip(three_documents: bytes) -> None:
    for cut in (len(three_documents) // 2, len(three_documents) - 1, len(three_documents) - 30, 10):
        with pytest.raises(XdmError):
            read_xdm(three_documents[:cut], LIMITS)


def test_zip64_refused(three_documents: bytes) -> None:
    eocd = three_documents.rfind(b"PK\x05\x06")
    forged = three_documents[:eocd] + b"PK\x06\x07" + bytes(16) + three_documents[eocd:]
    with pytest.raises(XdmError):
        read_xdm(forged, LIMITS)


def test_not_bytes_refused() -> None:
    with pytest.raises(XdmError):
        read_xdm("PK", LIMITS)  # type: ignore[arg-type]


# --- fuzz ----------------------------------------------------------------------------

SMALL_CDA = (b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>CR</title>'
             b'<recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>'
             b"</patientRole></recordTarget></ClinicalDocument>")


@pytest.fixture(scope="module")
def small_packages() -> list[bytes]:
    entries = [ldl_entry(content=SMALL_CDA), biology_entry(content=b"%PDF-1.4\n" * 20)]
    return [package(entries), package(entries, compression=zipfile.ZIP_STORED)]


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_raise_xdm_error(content: bytes) -> None:
    try:
        read_xdm(content, LIMITS)
    except XdmError:
        pass


@settings(max_examples=examples(400), suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_packages_only_raise_xdm_error(small_packages: list[bytes], data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(small_packages))
    assert len(read_xdm(original, LIMITS).documents) == 2
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        action = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if action == "flip":
            mutated[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set":
            mutated[position] = data.draw(st.sampled_from([0x00, 0xFF, 0x2E, 0x2F, 0x5C, 0x50, 0x4B]))
        elif action == "insert":
            mutated[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del mutated[position:position + data.draw(st.integers(1, 8))]
        else:
            del mutated[position:]
        if not mutated:
            break
    try:
        read_xdm(bytes(mutated), LIMITS)
    except XdmError:
        pass


def test_document_entries_bounded() -> None:
    # A small METADATA.XML naming one file many times must not cost one read and hash each.
    entries = [ldl_entry(entry_id=f"Document{i:03}") for i in range(LIMITS.zip_max_entries + 1)]
    with pytest.raises(XdmError, match="DocumentEntries"):
        read_xdm(package(entries), LIMITS)
    same_file = [ldl_entry(entry_id=f"Document{i:03}") for i in range(3)]
    result = read_xdm(package(same_file), LIMITS)
    assert len({id(d.content) for d in result.documents}) == 1  # read once, shared


def test_metadata_size_bounded() -> None:
    padding = b"<!--" + b" " * (11 * MIB) + b"-->"
    meta = metadata([ldl_entry()]).replace(b"<rim:RegistryObjectList>", b"<rim:RegistryObjectList>" + padding)
    with pytest.raises(XdmError, match="larger than"):
        read_xdm(package([ldl_entry()], meta=meta), LIMITS)
