"""Issue 5 end to end: attachments through the MX (smtplib over mutual TLS) into the
patient's dossier, refusals naming the part, filing through the IMAP folder
"Dossier médical" (imaplib), and the `dossier` CLI as a real process."""
from __future__ import annotations

import io
import json
import os
import smtplib
import subprocess
import sys
import tarfile
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from dossier_bridge.dossier import read_document
from policy.attachments import AttachmentLimits
from tests.integration.conftest import INS_ACTIVE, INS_PENDING, SENDER, RunningDaemon
from tests.unit.test_attachments import pdf_bytes
from tests.unit.test_xdm import CDA_DIR, biology_entry, certificate_entry, ldl_entry, package

RCPT = f"{INS_ACTIVE}@patient.mssante.fr"
DOSSIER_UTF7 = "Dossier m&AOk-dical"  # RFC 3501 §5.1.3 modified UTF-7 of "Dossier médical"


def mail(*attachments: tuple[bytes, str, str], subject: str = "Documents de sortie",
         message_id: str = "<docs-1@test-operator.mssante.fr>", extra: dict[str, str] | None = None) -> bytes:
    m = EmailMessage()
    m["From"] = f"Dr Martin <{SENDER}>"
    m["To"] = RCPT
    m["Subject"] = subject
    m["Message-ID"] = message_id
    m["Date"] = "Mon, 23 Nov 2026 10:00:00 +0100"
    for k, v in (extra or {}).items():
        m[k] = v
    m.set_content("Bonjour,\nveuillez trouver vos documents.\n")
    for content, ctype, name in attachments:
        maintype, subtype = ctype.split("/")
        m.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


def send(relay: RunningDaemon, raw: bytes, rcpts: list[str] | None = None) -> tuple[int, bytes]:
    with relay.smtp() as s:
        s.mail(SENDER)
        for r in rcpts or [RCPT]:
            assert s.rcpt(r)[0] == 250
        return s.data(raw)


def docs(relay: RunningDaemon, ins: str = INS_ACTIVE) -> list:
    return relay.call(relay.store.documents(relay.call(relay.store.require_mailbox(ins))))


def xdm_message(message_id: str = "<xdm-1@test-operator.mssante.fr>") -> bytes:
    pkg = package([ldl_entry(), biology_entry(), certificate_entry()])  # the certificate: another patient
    return mail((pkg, "application/zip", "IHE_XDM.ZIP"), message_id=message_id,
                extra={"X-MSS-CODECDA": "11490-0", "X-MSS-INS": "279035121518989"})


def test_xdm_package_is_filed_with_its_metadata_and_only_for_its_patient(relay: RunningDaemon) -> None:
    code, text = send(relay, xdm_message())
    assert code == 250, text
    filed = {d.meta["title"]: d for d in docs(relay)}
    assert set(filed) == {"Lettre de liaison à la sortie de l'établissement de santé",
                          "Compte rendu d'examens biologiques"}
    ldl = filed["Lettre de liaison à la sortie de l'établissement de santé"].meta
    assert ldl["category"] == "Compte rendu"
    assert (ldl["type_code"], ldl["origin"], ldl["mime_type"]) == ("11490-0", "xdm", "text/xml")
    assert ldl["author"]["id"] == "810002909371" and ldl["author"]["name"] == "JEAN DUPONT"
    assert ldl["author"]["address"] == SENDER
    assert "test-operator.mssante.fr" in ldl["author"]["cert_subject"]
    assert ldl["source_message_id"] == "<xdm-1@test-operator.mssante.fr>"
    assert ldl["date"].startswith("2019-12-03T12:30:00")
    assert ldl["mss"] == {"X-MSS-CODECDA": "11490-0", "X-MSS-INS": "279035121518989"}
    assert ldl["xdm"]["hash_ok"] is True
    assert ldl["sha256"] and ldl["size"] == len((CDA_DIR / "LDL-SES_2022.01.xml").read_bytes())
    # read back from inside the package in the stored message (no second copy was written)
    doc = filed["Lettre de liaison à la sortie de l'établissement de santé"]
    assert doc.locator.startswith("part:2|at:") and doc.locator.endswith("|cte:base64|xdm:IHE_XDM/SUBSET01/DOC0001.XML")
    mb = relay.call(relay.store.require_mailbox(INS_ACTIVE))
    content = relay.call(read_document(relay.store, mb, doc.id, "test", "", AttachmentLimits()))[1]
    assert content == (CDA_DIR / "LDL-SES_2022.01.xml").read_bytes()
    # the message itself is delivered, with its headers kept
    [stored] = relay.inbox(INS_ACTIVE)
    assert b"X-MSS-CODECDA: 11490-0" in stored
    # the mismatched document is not filed, and the audit log says why (not what)
    mb = relay.call(relay.store.require_mailbox(INS_ACTIVE))
    events = relay.call(relay.store.audit_events(mb.id))
    not_filed = [e for e in events if e.action == "dossier.not_filed"]
    assert len(not_filed) == 1 and not_filed[0].detail.startswith("patient_id_mismatch")
    assert "certificat" not in not_filed[0].detail.lower()
    assert len([e for e in events if e.action == "dossier.filed"]) == 2


def test_a_redelivered_message_files_nothing_twice(relay: RunningDaemon) -> None:
    raw = xdm_message("<xdm-redelivered@test-operator.mssante.fr>")
    for _ in range(2):
        assert send(relay, raw)[0] == 250
    assert len(relay.inbox(INS_ACTIVE)) == 2  # two deliveries of the message...
    assert len(docs(relay)) == 2  # ...and its two documents once


def test_pdf_to_two_patients_is_filed_for_each(relay: RunningDaemon) -> None:
    pdf = pdf_bytes()
    raw = mail((pdf, "application/pdf", "compte-rendu.pdf"), message_id="<pdf-1@test-operator.mssante.fr>")
    code, _ = send(relay, raw, [RCPT, f"{INS_PENDING}@patient.mssante.fr"])
    assert code == 250
    for ins in (INS_ACTIVE, INS_PENDING):
        [d] = docs(relay, ins)
        assert (d.meta["title"], d.meta["mime_type"], d.size) == ("compte-rendu.pdf", "application/pdf", len(pdf))
        mb = relay.call(relay.store.require_mailbox(ins))
        # the document points into its message's blob: read back through the locator
        assert d.locator.startswith("part:2|at:") and d.locator.endswith("|cte:base64")
        got = relay.call(read_document(relay.store, mb, d.id, "test", "", AttachmentLimits()))
        assert got[1] == pdf


@pytest.mark.parametrize("attachment, code, status, name", [
    # a Windows executable renamed and declared as a PDF
    ((b"MZ" + b"\x90" * 58 + b"\x40\x00\x00\x00" + b"PE\x00\x00" + b"\x00" * 200, "application/pdf",
      "facture.pdf"), 554, b"5.6.1", b"facture.pdf"),
    # a PNG declared as a PDF
    ((b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "application/pdf", "scan.pdf"), 554, b"5.6.1", b"scan.pdf"),
    # a script
    ((b"#!/bin/sh\nrm -rf /\n", "application/octet-stream", "install.sh"), 554, b"5.6.1", b"install.sh"),
])
def test_forbidden_or_disguised_attachments_are_refused_naming_the_part(
        relay: RunningDaemon, attachment: tuple[bytes, str, str], code: int, status: bytes, name: bytes) -> None:
    got_code, text = send(relay, mail(attachment))
    assert (got_code, text[:5]) == (code, status)
    assert name in text
    assert relay.inbox(INS_ACTIVE) == [] and docs(relay) == []


def test_zip_bomb_and_path_traversal_are_refused(relay: RunningDaemon) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"<x/>")
        z.writestr("IHE_XDM/SUBSET01/DOC0001.XML", b"\0" * (200 * 1024 * 1024))
    code, text = send(relay, mail((bomb.getvalue(), "application/zip", "IHE_XDM.ZIP")))
    assert (code, text[:5]) == (554, b"5.6.1") and b"IHE_XDM.ZIP" in text
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"<x/>")
        z.writestr("../../x", b"owned")
    code, text = send(relay, mail((evil.getvalue(), "application/zip", "IHE_XDM.ZIP")))
    assert (code, text[:5]) == (554, b"5.6.1")
    assert relay.inbox(INS_ACTIVE) == [] and docs(relay) == []


def test_hostile_xml_is_refused_and_the_daemon_keeps_serving(relay: RunningDaemon) -> None:
    xxe = (b'<?xml version="1.0"?><!DOCTYPE ClinicalDocument [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>')
    code, text = send(relay, mail((xxe, "text/xml", "cr.xml")))
    assert (code, text[:5]) == (554, b"5.6.1")
    assert send(relay, mail((pdf_bytes(), "application/pdf", "ok.pdf")))[0] == 250


def test_oversize_part_is_refused(relay: RunningDaemon, instance: Path) -> None:
    relay.stop()
    config = instance / "relay.toml"
    config.write_text(config.read_text().replace("max_part_bytes = 26214400", "max_part_bytes = 2000"))
    rd = RunningDaemon(config).start()
    try:
        with rd.smtp() as s:
            s.mail(SENDER)
            s.rcpt(RCPT)
            code, text = s.data(mail((pdf_bytes() + b"%" + b"x" * 3000 + b"\n", "application/pdf", "gros.pdf")))
        assert (code, text[:5]) == (552, b"5.3.4") and b"gros.pdf" in text
    finally:
        rd.stop()


def test_bare_cda_of_another_patient_is_delivered_but_not_filed(relay: RunningDaemon) -> None:
    cse = (CDA_DIR / "CSE-CS8_2024.01.xml").read_bytes()  # INS 223042545611404
    ldl = (CDA_DIR / "LDL-SES_2022.01.xml").read_bytes()  # INS 279035121518989 (test range)
    code, _ = send(relay, mail((cse, "text/xml", "cse.xml"), (ldl, "text/xml", "ldl.xml")))
    assert code == 250
    [d] = docs(relay)
    assert d.meta["origin"] == "cda" and d.meta["type_code"] == "11490-0"
    assert d.meta["author"]["id"] == "801234567897" and d.meta["author"]["name"] == "Charles DAVID"
    assert len(relay.inbox(INS_ACTIVE)) == 1


def _copy_into_dossier(relay: RunningDaemon, uid: bytes, move: bool = False) -> None:
    client = relay.imap()
    try:
        assert client.select("INBOX")[0] == "OK"
        typ, data = client.uid("MOVE" if move else "COPY", uid, f'"{DOSSIER_UTF7}"')
        assert typ == "OK", data
    finally:
        client.logout()


def test_filing_by_copying_into_the_dossier_folder(relay: RunningDaemon) -> None:
    # a message appended by the patient (not through the MX): nothing filed yet
    pdf = pdf_bytes("ordonnance")
    raw = mail((pdf, "application/pdf", "ordonnance.pdf"), message_id="<own-1@example.org>")
    client = relay.imap()
    try:
        typ, data = client.append("INBOX", None, None, raw)
        assert typ == "OK"
    finally:
        client.logout()
    assert docs(relay) == []
    _copy_into_dossier(relay, b"1")
    [d] = docs(relay)
    assert d.filed_by == "patient" and d.meta["title"] == "ordonnance.pdf"
    _copy_into_dossier(relay, b"1")  # idempotent
    _copy_into_dossier(relay, b"1", move=True)
    assert len(docs(relay)) == 1
    folder = relay.call(relay.store.messages(INS_ACTIVE, "Dossier médical"))
    assert len(folder) == 3  # the copies themselves are there, as IMAP promises


CLI = [sys.executable, "-m", "relay.cli"]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MSSANTE_RELAY_CONFIG=str(config))
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=60)


def test_dossier_cli_list_get_delete_and_export(relay: RunningDaemon, instance: Path, tmp_path: Path) -> None:
    config = instance / "relay.toml"
    pdf = pdf_bytes()
    assert send(relay, mail((pdf, "application/pdf", "cr.pdf")))[0] == 250
    listed = json.loads(cli(config, "dossier", "list", INS_ACTIVE, "--json").stdout)
    assert [d["title"] for d in listed] == ["cr.pdf"]
    doc_id = listed[0]["id"]
    assert doc_id in cli(config, "dossier", "list", INS_ACTIVE).stdout
    out = tmp_path / "cr.pdf"
    p = cli(config, "dossier", "get", INS_ACTIVE, doc_id, "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == pdf and (out.stat().st_mode & 0o077) == 0
    p = cli(config, "dossier", "get", INS_ACTIVE, doc_id, "--out", str(out))  # never overwritten
    assert p.returncode == 2 and "--out" in p.stderr
    p = cli(config, "dossier", "get", INS_ACTIVE, "nope", "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and p.stderr.startswith("mssante-relay: error: DOC_ID")
    # the export carries the dossier: documents and their metadata
    export = tmp_path / "export.tar"
    assert cli(config, "mailbox", "export", INS_ACTIVE, "--out", str(export)).returncode == 0
    with tarfile.open(export) as tar:
        meta = json.loads(tar.extractfile("dossier/documents.json").read())  # type: ignore[union-attr]
        assert [m["id"] for m in meta] == [doc_id]
        assert tar.extractfile(meta[0]["file"]).read() == pdf  # type: ignore[union-attr]
    assert cli(config, "dossier", "delete", INS_ACTIVE, doc_id).returncode == 0
    p = cli(config, "dossier", "delete", INS_ACTIVE, doc_id)
    assert p.returncode == 2 and doc_id in p.stderr
    assert json.loads(cli(config, "dossier", "list", INS_ACTIVE, "--json").stdout) == []
    audit = cli(config, "audit", INS_ACTIVE, "--json")
    actions = [e["action"] for e in json.loads(audit.stdout)]
    assert "dossier.filed" in actions and "dossier.download" in actions and "dossier.delete" in actions



def test_inline_body_images_are_checked_but_not_filed(relay: RunningDaemon) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes.fromhex("0000000d49484452000000010000000108060000001f15c489") + \
        bytes.fromhex("0000000d4944415478da63f8cfc0f01f0005000201a5d8d76d0000000049454e44ae426082")
    m = EmailMessage()
    m["From"] = f"Dr Martin <{SENDER}>"
    m["To"] = RCPT
    m["Subject"] = "Avec logo"
    m["Message-ID"] = "<logo-1@test-operator.mssante.fr>"
    m.set_content("Bonjour")
    m.add_alternative('<p>Bonjour</p><img src="cid:logo">', subtype="html")
    m.get_payload()[1].add_related(png, maintype="image", subtype="png", cid="<logo>")
    code, _ = send(relay, m.as_bytes(policy=m.policy.clone(linesep="\r\n")))
    assert code == 250
    assert docs(relay) == [] and len(relay.inbox(INS_ACTIVE)) == 1


EXE = b"MZ" + b"\x90" * 58 + b"\x40\x00\x00\x00" + b"PE\x00\x00" + b"\x00" * 200


def test_xdm_entry_with_a_wrong_hash_is_delivered_but_not_filed(relay: RunningDaemon) -> None:
    pkg = package([ldl_entry(), certificate_entry(patient=ldl_entry().patient, hash="0" * 40)])
    code, _ = send(relay, mail((pkg, "application/zip", "IHE_XDM.ZIP"),
                               message_id="<xdm-hash@test-operator.mssante.fr>"))
    assert code == 250
    assert [d.meta["type_code"] for d in docs(relay)] == ["11490-0"]
    mb = relay.call(relay.store.require_mailbox(INS_ACTIVE))
    reasons = sorted(e.detail.split()[0] for e in relay.call(relay.store.audit_events(mb.id))
                     if e.action == "dossier.not_filed")
    assert reasons == ["xdm_hash_mismatch"]


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


HOSTILE_PACKAGES = {
    # issue 10 §4: each of these got 250 and landed in the INBOX
    "exe_declared_pdf": (lambda: package([ldl_entry(), biology_entry(content=EXE, mime_type="application/pdf",
                                                                     uri="DOC0002.PDF")]),
                         b"IHE_XDM.ZIP/IHE_XDM/SUBSET01/DOC0002.PDF"),
    "exe_declared_xml": (lambda: package([ldl_entry(content=EXE)]), b"IHE_XDM.ZIP/IHE_XDM/SUBSET01/DOC0001.XML"),
    "zip_holding_exe": (lambda: package([ldl_entry(content=_zip({"setup.exe": EXE}), mime_type="application/zip",
                                                   uri="DOC0001.ZIP")]),
                        b"IHE_XDM.ZIP/IHE_XDM/SUBSET01/DOC0001.ZIP"),
    "html_with_script": (lambda: package([ldl_entry()], extra={
        "INDEX.HTM": b"<html><body><script>alert(document.cookie)</script></body></html>"}),
                         b"IHE_XDM.ZIP/INDEX.HTM"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_PACKAGES))
def test_hostile_xdm_content_is_refused_whole_naming_the_entry(relay: RunningDaemon, kind: str) -> None:
    build, entry = HOSTILE_PACKAGES[kind]
    code, text = send(relay, mail((build(), "application/zip", "IHE_XDM.ZIP"),
                                  message_id=f"<xdm-{kind}@test-operator.mssante.fr>"))
    assert (code, text[:5]) == (554, b"5.6.1"), text
    assert entry in text, text
    assert relay.inbox(INS_ACTIVE) == [] and docs(relay) == []


def test_patient_submission_of_a_hostile_xdm_is_refused(relay: RunningDaemon) -> None:
    assert send(relay, mail())[0] == 250  # the professional writes first: the exchange is open
    m = EmailMessage()
    m["From"] = RCPT
    m["To"] = SENDER
    m["Subject"] = "Re: Documents de sortie"
    m["In-Reply-To"] = m["References"] = "<docs-1@test-operator.mssante.fr>"
    m.set_content("Voici mes documents.\n")
    m.add_attachment(HOSTILE_PACKAGES["exe_declared_pdf"][0](), maintype="application", subtype="zip",
                     filename="IHE_XDM.ZIP")
    with relay.submission() as s:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail(RCPT, [SENDER], m.as_bytes(policy=m.policy.clone(linesep="\r\n")))
    assert refused.value.smtp_code == 554 and refused.value.smtp_error.startswith(b"5.6.1")
    assert b"IHE_XDM.ZIP/IHE_XDM/SUBSET01/DOC0002.PDF" in refused.value.smtp_error
    assert relay.call(relay.store.queue_stats())[0] == 0


def test_filing_a_stored_hostile_xdm_files_nothing_from_it(relay: RunningDaemon) -> None:
    """The patient's filing path shares the check: a message holding a hostile package
    (appended by the patient, or stored before the rule) files none of its documents."""
    raw = mail((HOSTILE_PACKAGES["exe_declared_pdf"][0](), "application/zip", "IHE_XDM.ZIP"),
               message_id="<own-xdm@example.org>")
    client = relay.imap()
    try:
        assert client.append("INBOX", None, None, raw)[0] == "OK"
    finally:
        client.logout()
    _copy_into_dossier(relay, b"1")
    assert docs(relay) == []  # not even the LDL beside the executable
    mb = relay.call(relay.store.require_mailbox(INS_ACTIVE))
    reasons = [e.detail for e in relay.call(relay.store.audit_events(mb.id)) if e.action == "dossier.not_filed"]
    assert len(reasons) == 1 and reasons[0].startswith("attachment_forbidden")
