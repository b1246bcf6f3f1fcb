"""Messages the kit sends or a tester starts from: an IHE_XDM package the way XDM
writers build it (ITI TF-1 §16, ITI TF-3 §4.2 ebRIM 3.0), a minimal CDA R2 header for a
given INS, and the professional's message that carries them with the MSSanté headers
of the client référentiel."""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from email.message import EmailMessage
from xml.sax.saxutils import escape, quoteattr

from dossier_bridge.xdm import (DE_CLASS_CODE, DE_PATIENT_ID, DE_TYPE_CODE, DE_UNIQUE_ID, DOCUMENT_ENTRY_STABLE,
                                HAS_MEMBER, SS_PATIENT_ID, SS_UNIQUE_ID, SUBMISSION_SET_NODE)

INS_TEST_OID = "1.2.250.1.213.1.4.10"  # INS-NIR of test patients (DESIGN.md §4 "Dossier")
LOINC_OID = "2.16.840.1.113883.6.1"
CLASSIFICATION = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"
EXTERNAL_ID = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier"
INDEX_HTM = b"<html><body><a href='README.TXT'>README.TXT</a> <a href='IHE_XDM/SUBSET01/'>SUBSET01</a></body></html>"
README_TXT = b"Editeur: mssante-relay conformance kit\r\nContenu: document de test\r\n"
KIT_NIL = "MSSANTE-RELAY-CONFORMANCE-KIT"


@dataclass(frozen=True, slots=True)
class XdmDoc:
    """One DocumentEntry: its file and what METADATA.XML says of it."""

    filename: str  # in IHE_XDM/SUBSET01/
    content: bytes
    title: str
    type_code: str
    patient_ins: str
    patient_oid: str = INS_TEST_OID
    mime_type: str = "text/xml"
    declared_sha1: str | None = None  # None: the right one
    declared_size: int | None = None


def _slot(name: str, *values: str) -> str:
    inner = "".join(f"<rim:Value>{escape(v)}</rim:Value>" for v in values)
    return f'<rim:Slot name="{name}"><rim:ValueList>{inner}</rim:ValueList></rim:Slot>'


def _name(value: str) -> str:
    return f'<rim:Name><rim:LocalizedString charset="UTF-8" xml:lang="fr-FR" value={quoteattr(value)}/></rim:Name>'


def _coded(scheme: str, obj: str, cid: str, code: str, coding: str, display: str) -> str:
    return (f'<rim:Classification classificationScheme="{scheme}" classifiedObject="{obj}" id="{cid}" '
            f'nodeRepresentation={quoteattr(code)} objectType="{CLASSIFICATION}">'
            f"{_slot('codingScheme', coding)}{_name(display)}</rim:Classification>")


def _external(scheme: str, obj: str, eid: str, value: str) -> str:
    return (f'<rim:ExternalIdentifier id="{eid}" identificationScheme="{scheme}" objectType="{EXTERNAL_ID}" '
            f'registryObject="{obj}" value={quoteattr(value)}/>')


def metadata_xml(docs: list[XdmDoc]) -> bytes:
    patient = f"{docs[0].patient_ins}^^^&{docs[0].patient_oid}&ISO" if docs else ""
    entries = []
    for i, d in enumerate(docs, 1):
        e = f"Document{i:02d}"
        sha1 = d.declared_sha1 or hashlib.sha1(d.content).hexdigest()
        size = d.declared_size if d.declared_size is not None else len(d.content)
        entries.append(
            f'<rim:ExtrinsicObject id="{e}" mimeType="{d.mime_type}" objectType="{DOCUMENT_ENTRY_STABLE}">'
            + _slot("creationTime", "20260101120000") + _slot("hash", sha1) + _slot("size", str(size))
            + _slot("URI", d.filename) + _name(d.title)
            + _coded(DE_CLASS_CODE, e, f"{e}-class", "10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
            + _coded(DE_TYPE_CODE, e, f"{e}-type", d.type_code, LOINC_OID, d.title)
            + _external(DE_PATIENT_ID, e, f"{e}-pid", f"{d.patient_ins}^^^&{d.patient_oid}&ISO")
            + _external(DE_UNIQUE_ID, e, f"{e}-uid", f"1.2.250.1.999.1.{i}")
            + "</rim:ExtrinsicObject>")
    ss = ('<rim:RegistryPackage id="SubmissionSet01" objectType="urn:oasis:names:tc:ebxml-regrep:ObjectType:'
          'RegistryObject:RegistryPackage">' + _slot("submissionTime", "20260101120000") + _name("Envoi de test")
          + _external(SS_UNIQUE_ID, "SubmissionSet01", "ss-uid", "1.2.250.1.999.2.1")
          + _external(SS_PATIENT_ID, "SubmissionSet01", "ss-pid", patient) + "</rim:RegistryPackage>"
          + f'<rim:Classification classificationNode="{SUBMISSION_SET_NODE}" classifiedObject="SubmissionSet01" '
          f'id="ss-node" objectType="{CLASSIFICATION}"/>')
    assoc = "".join(f'<rim:Association associationType="{HAS_MEMBER}" id="as{i}" sourceObject="SubmissionSet01" '
                    f'targetObject="Document{i:02d}"/>' for i in range(1, len(docs) + 1))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<lcm:SubmitObjectsRequest '
            'xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">'
            "<rim:RegistryObjectList>" + ss + "".join(entries) + assoc
            + "</rim:RegistryObjectList></lcm:SubmitObjectsRequest>").encode()


def xdm_package(docs: list[XdmDoc], extra: dict[str, bytes] | None = None) -> bytes:
    """IHE_XDM.ZIP: INDEX.HTM, README.TXT, IHE_XDM/SUBSET01/METADATA.XML and the files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("INDEX.HTM", INDEX_HTM)
        archive.writestr("README.TXT", README_TXT)
        archive.writestr("IHE_XDM/SUBSET01/METADATA.XML", metadata_xml(docs))
        for d in docs:
            archive.writestr(f"IHE_XDM/SUBSET01/{d.filename}", d.content)
        for path, data in (extra or {}).items():
            archive.writestr(path, data)
    return buffer.getvalue()


def minimal_cda(ins: str, title: str = "Compte rendu de test (kit de conformite)", code: str = "11490-0") -> bytes:
    """A CDA R2 header naming the patient by INS and the four identity traits."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="1.2.250.1.999.3" extension="kit"/>
  <code code="{escape(code)}" codeSystem="{LOINC_OID}" displayName="{escape(title)}"/>
  <title>{escape(title)}</title>
  <effectiveTime value="20260101120000+0100"/>
  <recordTarget><patientRole><id root="{INS_TEST_OID}" extension="{escape(ins)}"/>
    <patient><name><family qualifier="BR">TEST</family><given qualifier="BR">KIT</given></name>
      <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="19790328"/>
    </patient></patientRole></recordTarget>
  <component><nonXMLBody><text mediaType="text/plain">Document de test.</text></nonXMLBody></component>
</ClinicalDocument>
""".encode()


def professional_message(sender: str, to: str, subject: str, body: str, message_id: str,
                         attachments: list[tuple[bytes, str, str]] | None = None,
                         headers: dict[str, str] | None = None) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = message_id
    m["Date"] = "Thu, 01 Jan 2026 12:00:00 +0100"
    for k, v in (headers or {}).items():
        m[k] = v
    m.set_content(body)
    for content, ctype, filename in attachments or []:
        maintype, subtype = ctype.split("/")
        m.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))
