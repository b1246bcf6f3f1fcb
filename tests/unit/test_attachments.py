"""policy/attachments.py: MIME parts, real content, the allow-list and its refusals.

Every file here is built by the test (no fixtures on disk) except the real CDA documents
of /work/shared/data/cda, read only.
"""
from __future__ import annotations

import base64
import io
import stat
import struct
import time
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.attachments import (MIB, Attachment, AttachmentLimits, Kind, Part, check_message, check_zip, classify,
                                mime_parts, sniff)
from policy.decisions import Decision
from tests.web.files import pdf as pdf_bytes, png as png_bytes

CDA_DIR = Path(__file__).resolve().parents[3] / "shared/data/cda"
LDL_SES = (CDA_DIR / "LDL-SES_2022.01.xml").read_bytes()
LIMITS = AttachmentLimits()


# --- real files, built by hand (the PDF and PNG builders are shared with the webmail tests) ----------------------------------------------------------


def jpeg_bytes() -> bytes:
    """A baseline 8x8 grey JPEG (ITU T.81): SOI, APP0 JFIF, DQT, SOF0, DHT x2, SOS, EOI.
    One-code Huffman tables: DC difference 0, then end of block."""
    def segment(marker: int, data: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\x00" + b"\x01" * 64
    sof0 = struct.pack(">BHHB", 8, 8, 8, 1) + b"\x01\x11\x00"
    dht_dc = b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00"  # class 0 id 0: one 1-bit code for category 0
    dht_ac = b"\x10" + b"\x01" + b"\x00" * 15 + b"\x00"  # class 1 id 0: one 1-bit code for EOB
    sos = b"\x01\x01\x00\x00\x3f\x00"
    return (b"\xff\xd8" + segment(0xE0, app0) + segment(0xDB, dqt) + segment(0xC0, sof0)
            + segment(0xC4, dht_dc) + segment(0xC4, dht_ac) + segment(0xDA, sos) + b"\x3f" + b"\xff\xd9")


def tiff_bytes() -> bytes:
    """A 1x1 bilevel little-endian TIFF (TIFF 6.0 §2-3): header, one IFD, one strip."""
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 1), (259, 3, 1, 1), (262, 3, 1, 0),
               (273, 4, 1, 8 + 2 + 8 * 12 + 4), (278, 3, 1, 1), (279, 4, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\x00" * 4
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x80"


RTF = b"{\\rtf1\\ansi\\deff0 {\\fonttbl {\\f0 Times New Roman;}}\\f0\\fs24 Compte rendu de consultation\\par}"


def zip_bytes(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


DOCX_FILES = {
    "[Content_Types].xml": b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
                           b'package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/>'
                           b'</Types>',
    "_rels/.rels": b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
                   b'relationships"/>',
    "word/document.xml": b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                         b'wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Bonjour</w:t></w:r></w:p>'
                         b'</w:body></w:document>',
}


def docx_bytes(extra: dict[str, bytes] | None = None) -> bytes:
    return zip_bytes({**DOCX_FILES, **(extra or {})})


def ole2_bytes(entries: list[tuple[str, int]]) -> bytes:
    """An OLE2 compound file ([MS-CFB]): 512-byte header, then one directory sector of
    128-byte entries (root entry first)."""
    header = bytearray(512)
    header[0:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    struct.pack_into("<HHHHH", header, 24, 0x3E, 3, 0xFFFE, 9, 6)  # minor, major, byte order, sector shifts
    struct.pack_into("<I", header, 48, 0)  # first directory sector
    directory = bytearray()
    for name, kind in [("Root Entry", 5), *entries]:
        entry = bytearray(128)
        encoded = name.encode("utf-16-le") + b"\x00\x00"
        entry[0:len(encoded)] = encoded
        struct.pack_into("<HB", entry, 64, len(encoded), kind)
        directory += entry
    directory += b"\x00" * (-len(directory) % 512)
    return bytes(header + directory)


WORD_DOC = ole2_bytes([("WordDocument", 2), ("1Table", 2)])


def xdm_bytes(metadata_path: str = "IHE_XDM/SUBSET01/METADATA.XML") -> bytes:
    return zip_bytes({
        "README.TXT": b"Dossier IHE XDM\r\n",
        "INDEX.HTM": b"<html><body><a href='IHE_XDM/SUBSET01/DOC0001.XML'>LDL</a></body></html>",
        metadata_path: b'<?xml version="1.0"?><lcm:SubmitObjectsRequest '
                       b'xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"/>',
        "IHE_XDM/SUBSET01/DOC0001.XML": LDL_SES,
    })


def pe_bytes() -> bytes:
    """A Windows PE: DOS header (e_lfanew at 0x3C) then "PE\\0\\0" and a COFF header."""
    dos = bytearray(64)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 64)
    coff = struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0, 0x102)
    return bytes(dos) + b"PE\x00\x00" + coff + b"\x00" * 300


ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + struct.pack("<HHI", 2, 0x3E, 1) + b"\x00" * 100


def part(content: bytes, filename: str | None = "doc.bin", content_type: str = "application/octet-stream",
         disposition: str | None = "attachment", path: str = "2") -> Part:
    return Part(path, filename, content_type, disposition, content, 1)


def mail(*attachments: tuple[bytes, str, str | None], body: str = "Bonjour,\nvos documents.\n") -> bytes:
    m = EmailMessage()
    m["From"] = "Dr Martin <dr.martin@test-operator.mssante.fr>"
    m["To"] = "279035121518989@patient.mssante.fr"
    m["Subject"] = "Documents"
    m.set_content(body)
    for content, ctype, name in attachments:
        maintype, subtype = ctype.split("/")
        m.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return m.as_bytes()


def decide(raw: bytes, limits: AttachmentLimits = LIMITS) -> list[Attachment] | Decision:
    parts = mime_parts(raw, limits)
    return parts if isinstance(parts, Decision) else check_message(parts, limits)


def assert_refused(result: object, code: int, status: str, rule: str, *names: str) -> Decision:
    assert isinstance(result, Decision), result
    assert (result.code, result.status, result.rule) == (code, status, rule), result
    line = result.smtp()
    assert line.isascii() and line.isprintable() and len(line) + 2 <= 512  # RFC 5321 §4.5.3.1.5
    fr, en = line.split(" / ")
    for name in names:
        assert name in fr and name in en, (name, line)
    return result


# --- the allow-list -----------------------------------------------------------------------


ALLOWED = [
    (pdf_bytes(), "application/pdf", "compte-rendu.pdf", Kind.PDF),
    (jpeg_bytes(), "image/jpeg", "photo.jpg", Kind.JPEG),
    (jpeg_bytes(), "image/pjpeg", "photo.JPEG", Kind.JPEG),
    (png_bytes(), "image/png", "scan.png", Kind.PNG),
    (tiff_bytes(), "image/tiff", "fax.tif", Kind.TIFF),
    (b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 30, "image/tiff", "fax.tiff", Kind.TIFF),
    ("Résultats normaux.\r\n".encode(), "text/plain", "resultats.txt", Kind.TEXT),
    ("Résultats normaux.\r\n".encode("latin-1"), "text/plain", "resultats.txt", Kind.TEXT),
    (RTF, "application/rtf", "lettre.rtf", Kind.RTF),
    (RTF, "text/rtf", "lettre.rtf", Kind.RTF),
    (WORD_DOC, "application/msword", "lettre.doc", Kind.WORD),
    (docx_bytes(), Kind.DOCX.mime_type, "lettre.docx", Kind.DOCX),
    (LDL_SES, "text/xml", "ldl.xml", Kind.CDA),
    (LDL_SES, "application/hl7-v3+xml", None, Kind.CDA),
    (b"\xef\xbb\xbf" + LDL_SES, "application/xml", "ldl.xml", Kind.CDA),
    (xdm_bytes(), "application/zip", "IHE_XDM.ZIP", Kind.XDM),
    (xdm_bytes("ihe_xdm/Subset01/metadata.xml"), "application/x-zip-compressed", "envoi.zip", Kind.XDM),
    (pdf_bytes(), "application/octet-stream", "compte-rendu.pdf", Kind.PDF),  # declares nothing
    (pdf_bytes(), "", "compte-rendu.pdf", Kind.PDF),  # no Content-Type at all
    (png_bytes(), "image/png", "scan", Kind.PNG),  # no extension
    (pdf_bytes(), "application/pdf", "CR du 12.03.2024", Kind.PDF),  # digits are no extension
]


@pytest.mark.parametrize("content, ctype, name, kind", ALLOWED)
def test_allowed_kinds_are_accepted(content: bytes, ctype: str, name: str | None, kind: Kind) -> None:
    att = classify(part(content, name, ctype), LIMITS)
    assert isinstance(att, Attachment), att
    assert att.kind is kind and att.mime_type == kind.mime_type
    assert sniff(content) is kind


def test_canonical_mime_types() -> None:
    assert {k.name: k.mime_type for k in Kind} == {
        "PDF": "application/pdf", "JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff",
        "TEXT": "text/plain", "RTF": "application/rtf", "WORD": "application/msword",
        "DOCX": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "CDA": "text/xml", "XDM": "application/zip"}


@pytest.mark.parametrize("cda", sorted(CDA_DIR.glob("*.xml")), ids=lambda p: p.name)
def test_every_real_cda_is_recognised(cda: Path) -> None:
    assert sniff(cda.read_bytes()) is Kind.CDA


def test_a_message_with_every_allowed_kind_passes_in_order() -> None:
    files = [(c, t, n) for c, t, n, _ in ALLOWED if n is not None][:16]
    got = decide(mail(*files))
    assert isinstance(got, list)
    assert [a.part.filename for a in got] == [n for _, _, n in files]
    assert [a.part.path for a in got] == [str(i) for i in range(2, len(files) + 2)]


def test_the_whole_real_message_through_mime_parts() -> None:
    got = decide(mail((pdf_bytes(), "application/pdf", "compte-rendu.pdf"),
                      (xdm_bytes(), "application/zip", "IHE_XDM.ZIP")))
    assert isinstance(got, list)
    assert [(a.kind, a.part.filename, a.part.content_type, a.part.disposition) for a in got] == [
        (Kind.PDF, "compte-rendu.pdf", "application/pdf", "attachment"),
        (Kind.XDM, "IHE_XDM.ZIP", "application/zip", "attachment")]
    assert got[0].part.content == pdf_bytes()  # transfer-decoded (base64)


# --- forbidden and disguised content ------------------------------------------------------


def test_windows_executable_disguised_as_invoice_is_refused_naming_it() -> None:
    got = decide(mail((pe_bytes(), "application/pdf", "facture.pdf")))
    d = assert_refused(got, 554, "5.6.1", "attachment_forbidden", "facture.pdf")
    assert d.fr == "Piece jointe refusee (type non autorise: executable Windows): facture.pdf"
    assert d.en == "Attachment refused (type not allowed: Windows executable): facture.pdf"
    assert d.smtp().startswith("554 5.6.1 Piece jointe refusee")


@pytest.mark.parametrize("content, ctype, name, found", [
    (ELF, "application/octet-stream", "outil", "ELF"),
    (b"#!/bin/sh\nrm -rf /\n", "application/octet-stream", "install.sh", "script"),
    (b"#!/bin/sh\nrm -rf /\n", "text/plain", "notes.txt", "script"),
    (b"%!PS-Adobe-3.0\n%%EOF\n", "application/postscript", "page.ps", "PostScript"),
    (b"<html><body><script>alert(1)</script></body></html>", "text/html", "page.html", "HTML"),
    (b"<!DOCTYPE html><html></html>", "text/html", "page.htm", "HTML"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>x()</script></svg>", "image/svg+xml", "logo.svg",
     "element svg"),
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif", "logo.gif", "GIF"),
    (b"\x00\x01\x02\x03\xfe\xfd" * 10, "application/octet-stream", "data.bin", "non reconnu"),
    (zip_bytes({"a.txt": b"x"}), "application/zip", "archive.zip", "autre que IHE_XDM"),
    (docx_bytes({"word/vbaProject.bin": b"\x00" * 10}), Kind.DOCX.mime_type, "lettre.docx", "macros"),
    (ole2_bytes([("WordDocument", 2), ("Macros", 1), ("VBA", 1)]), "application/msword", "lettre.doc", "macros"),
    (ole2_bytes([("Workbook", 2)]), "application/vnd.ms-excel", "tableur.xls", "OLE2"),
    (ole2_bytes([("SummaryInformation", 2)]), "application/x-msi", "setup.msi", "MSI"),
])
def test_forbidden_content_is_refused_saying_what_was_found(content: bytes, ctype: str, name: str,
                                                            found: str) -> None:
    d = assert_refused(classify(part(content, name, ctype), LIMITS), 554, "5.6.1", "attachment_forbidden", name)
    assert found in d.fr, d.fr
    assert sniff(content) is None


def test_puremagic_weak_guesses_do_not_decide() -> None:
    # puremagic calls text starting with "I I" a TIFF, and "{" JSON: plain text here
    for text in (b"I I confirm the appointment.\n", b"{ note: rappel }\n", b"From the lab: all normal\n"):
        att = classify(part(text, "note.txt", "text/plain"), LIMITS)
        assert isinstance(att, Attachment) and att.kind is Kind.TEXT


@pytest.mark.parametrize("content, ctype, name, rule, text", [
    (png_bytes(), "image/jpeg", "photo.jpg", "attachment_mismatch", "declaree image/jpeg mais contenu PNG"),
    (png_bytes(), "application/pdf", "scan.pdf", "attachment_mismatch", "declaree application/pdf mais contenu PNG"),
    (pdf_bytes(), "application/octet-stream", "scan.png", "attachment_mismatch", "extension .png mais contenu PDF"),
    (pdf_bytes(), "application/pdf", "scan.pdf.png", "attachment_mismatch", "extension .png mais contenu PDF"),
    (b"hello\n", "text/plain", "lisez-moi.js", "attachment_forbidden", "extension .js non autorisee"),
    (b"hello\n", "text/plain", "lisez-moi.js. ", "attachment_forbidden", "extension .js non autorisee"),
    (pdf_bytes(), "application/pdf", "facture.pdf.exe", "attachment_forbidden", "extension .exe non autorisee"),
    (LDL_SES, "text/plain", "ldl.txt", "attachment_mismatch", "declaree text/plain mais contenu CDA"),
    (xdm_bytes(), "application/zip", "IHE_XDM.docx", "attachment_mismatch", "extension .docx mais contenu IHE XDM"),
])
def test_declared_type_and_extension_must_fit_the_content(content: bytes, ctype: str, name: str, rule: str,
                                                          text: str) -> None:
    d = assert_refused(classify(part(content, name, ctype), LIMITS), 554, "5.6.1", rule, name.strip(". "))
    assert text in d.fr, d.fr


def test_word_and_docx_accept_each_other_s_type_and_extension() -> None:
    assert isinstance(classify(part(docx_bytes(), "ancien.doc", "application/msword"), LIMITS), Attachment)
    assert isinstance(classify(part(WORD_DOC, "lettre.docx", Kind.DOCX.mime_type), LIMITS), Attachment)


# --- XML ------------------------------------------------------------------------------


def test_xml_with_an_external_entity_claiming_to_be_cda_is_refused() -> None:
    xxe = (b'<?xml version="1.0"?><!DOCTYPE ClinicalDocument [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>')
    d = assert_refused(classify(part(xxe, "cr.xml", "text/xml"), LIMITS), 554, "5.6.1", "attachment_forbidden",
                       "cr.xml")
    assert "DOCTYPE" in d.fr and "DOCTYPE" in d.en
    assert sniff(xxe) is None


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    lol = b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10 if i > 1 else b"&lol;" * 10) for i in range(1, 10)
    ) + b']><ClinicalDocument xmlns="urn:hl7-org:v3">&lol9;</ClinicalDocument>'
    started = time.monotonic()
    assert_refused(classify(part(lol, "cr.xml", "text/xml"), LIMITS), 554, "5.6.1", "attachment_forbidden")
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("xml, found", [
    (b'<?xml version="1.0"?><root><a/></root>', "element root"),
    (b'<ClinicalDocument><title/></ClinicalDocument>', "element ClinicalDocument"),  # no HL7 v3 namespace
    (b'<ClinicalDocument xmlns="urn:hl7-org:v2"/>', "element ClinicalDocument"),
    (b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"', "mal forme"),  # truncated tag
    (b"<not xml at all", "mal forme"),
])
def test_xml_other_than_cda_is_refused(xml: bytes, found: str) -> None:
    d = assert_refused(classify(part(xml, "doc.xml", "application/xml"), LIMITS), 554, "5.6.1",
                       "attachment_forbidden", "doc.xml")
    assert found in d.fr, d.fr


def test_cda_with_a_prefixed_root_is_recognised() -> None:
    xml = b'<?xml version="1.0"?>\n<!-- comment --><v3:ClinicalDocument xmlns:v3="urn:hl7-org:v3"/>'
    assert sniff(xml) is Kind.CDA
    utf16 = '<?xml version="1.0" encoding="UTF-16"?><ClinicalDocument xmlns="urn:hl7-org:v3"/>'
    assert sniff(b"\xff\xfe" + utf16.encode("utf-16-le")) is Kind.CDA


# --- zips ---------------------------------------------------------------------------


def test_zip_bomb_is_refused_on_its_ratio() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"<x/>")
        with z.open("IHE_XDM/SUBSET01/DOC0001.XML", "w") as f:
            zeros = b"\x00" * MIB
            for _ in range(200):
                f.write(zeros)
    bomb = buf.getvalue()
    assert len(bomb) < MIB
    d = assert_refused(classify(part(bomb, "IHE_XDM.ZIP", "application/zip"), LIMITS), 554, "5.6.1",
                       "attachment_zip", "IHE_XDM.ZIP")
    assert d.fr == "Piece jointe refusee (zip: fichier 2, taux de compression suspect (bombe zip?)): IHE_XDM.ZIP"
    assert "zip bomb" in d.en


def test_zip_of_too_many_entries_is_refused() -> None:
    files = {f"IHE_XDM/SUBSET01/DOC{i:04d}.TXT": b"x" for i in range(100)}
    files["IHE_XDM/SUBSET01/METADATA.XML"] = b"<x/>"  # the 101st
    d = assert_refused(classify(part(zip_bytes(files), "IHE_XDM.ZIP", "application/zip"), LIMITS),
                       554, "5.6.1", "attachment_zip", "IHE_XDM.ZIP")
    assert "plus de 100 fichiers" in d.fr and "more than 100 files" in d.en
    del files["IHE_XDM/SUBSET01/DOC0000.TXT"]
    assert isinstance(classify(part(zip_bytes(files), "IHE_XDM.ZIP", "application/zip"), LIMITS), Attachment)


def test_zip_whose_directory_claims_few_entries_but_holds_many_is_refused() -> None:
    files = {f"f{i}": b"" for i in range(150)}
    data = bytearray(zip_bytes(files, zipfile.ZIP_STORED))
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, eocd + 8, 3, 3)  # the end record lies about the count
    d = assert_refused(check_zip(bytes(data), LIMITS), 554, "5.6.1", "attachment_zip")
    assert "plus de 100 fichiers" in d.fr


def test_zip_unpacked_total_is_bounded() -> None:
    files = {"IHE_XDM/SUBSET01/METADATA.XML": b"<x/>", "IHE_XDM/SUBSET01/A.TXT": bytes(range(256)) * 40}
    small = AttachmentLimits(zip_max_unpacked_bytes=5000)
    d = assert_refused(check_zip(zip_bytes(files), small), 554, "5.6.1", "attachment_zip", "archive zip")
    assert "plus de 5000 octets une fois decompresse" in d.fr


def _patch_central(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        struct.pack_into(fmt, out, pos + offset, *values)
        pos = out.find(b"PK\x01\x02", pos + 1)
    return bytes(out)


def _symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"<x/>")
        info = zipfile.ZipInfo("IHE_XDM/SUBSET01/DOC0001.XML")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, b"/etc/passwd")
    return buf.getvalue()


def _method_zip() -> bytes:
    return zip_bytes({"IHE_XDM/SUBSET01/METADATA.XML": b"<x/>" * 10}, zipfile.ZIP_BZIP2)


XDM_OK = {"IHE_XDM/SUBSET01/METADATA.XML": b"<x/>"}


@pytest.mark.parametrize("data, text", [
    (zip_bytes({**XDM_OK, "../../x": b"owned"}), "nom dangereux ('..')"),
    (zip_bytes({**XDM_OK, "IHE_XDM/../../x": b"owned"}), "nom dangereux ('..')"),
    (zip_bytes({**XDM_OK, "/etc/cron.d/x": b"owned"}), "nom dangereux (chemin absolu)"),
    (zip_bytes({**XDM_OK, "C:/Windows/x.dll": b"owned"}), "nom dangereux (lettre de lecteur)"),
    (zip_bytes({**XDM_OK, "IHE_XDM\\SUBSET01\\x": b"owned"}), "nom dangereux (barre oblique inverse)"),
    # zipfile's writer cuts a name at NUL: patched in afterwards, in both headers
    (zip_bytes({**XDM_OK, "IHE_XDM/a#.xml": b"owned"}).replace(b"a#.xml", b"a\x00.xml"), "nom dangereux (NUL)"),
    (_symlink_zip(), "lien symbolique"),
    (_patch_central(zip_bytes({**XDM_OK, "IHE_XDM/SUBSET01/DOC.XML": b"secret"}), 8, "<H", 1), "chiffre"),
    (_method_zip(), "methode de compression 12"),
    (_patch_central(zip_bytes(XDM_OK, zipfile.ZIP_STORED), 20, "<I", 0), "taux de compression"),  # packed 0
    (b"PK\x03\x04" + b"garbage" * 20, "archive illisible"),
])
def test_unsafe_zip_entries_are_refused(data: bytes, text: str) -> None:
    d = assert_refused(classify(part(data, "IHE_XDM.ZIP", "application/zip"), LIMITS), 554, "5.6.1",
                       "attachment_zip", "IHE_XDM.ZIP")
    assert text in d.fr, d.fr
    assert check_zip(data, LIMITS) is not None and sniff(data) is None


def test_duplicate_entry_names_are_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"<a/>")
        with pytest.warns(UserWarning):
            z.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"<b/>")
    d = assert_refused(check_zip(buf.getvalue(), LIMITS), 554, "5.6.1", "attachment_zip")
    assert "nom en double" in d.fr


def test_good_zips_pass_check_zip() -> None:
    assert check_zip(xdm_bytes(), LIMITS) is None
    assert check_zip(docx_bytes(), LIMITS) is None


# --- sizes ----------------------------------------------------------------------------


def test_oversize_part_is_refused_naming_it() -> None:
    small = AttachmentLimits(max_part_bytes=1000)
    big = pdf_bytes() + b"%" + b"x" * 1000 + b"\n"
    d = assert_refused(decide(mail((big, "application/pdf", "gros.pdf")), small), 552, "5.3.4",
                       "attachment_too_big", "gros.pdf")
    assert d.fr == "Piece jointe trop volumineuse (1000 octets au plus): gros.pdf"
    assert d.en == "Attachment too big (1000 bytes at most): gros.pdf"
    assert isinstance(decide(mail((pdf_bytes(), "application/pdf", "petit.pdf")), small), list)


def test_total_of_attachments_is_bounded() -> None:
    limits = AttachmentLimits(max_total_bytes=2 * len(pdf_bytes()) + 10)
    two = mail((pdf_bytes(), "application/pdf", "a.pdf"), (pdf_bytes(), "application/pdf", "b.pdf"))
    assert isinstance(decide(two, limits), list)
    three = mail(*[(pdf_bytes(), "application/pdf", f"{n}.pdf") for n in "abc"])
    d = assert_refused(decide(three, limits), 552, "5.3.4", "attachment_too_big")
    assert "au total" in d.fr


def test_patient_limit_reads_as_megabytes() -> None:
    from policy.attachments import PATIENT_MAX_PART_BYTES
    d = classify(part(b"x" * (PATIENT_MAX_PART_BYTES + 1), "notes.txt", "text/plain"),
                 AttachmentLimits(max_part_bytes=PATIENT_MAX_PART_BYTES))
    assert_refused(d, 552, "5.3.4", "attachment_too_big", "notes.txt")
    assert isinstance(d, Decision) and "(5 Mo au plus)" in d.fr and "(5 MB at most)" in d.en


# --- what is not an attachment ----------------------------------------------------------


def test_text_and_html_alternatives_are_the_message_not_attachments() -> None:
    m = EmailMessage()
    m["Subject"] = "Rendez-vous"
    m.set_content("Bonjour, votre rendez-vous est confirmé.\n")
    m.add_alternative("<html><body><p>Bonjour</p><script>x()</script></body></html>", subtype="html")
    parts = mime_parts(m.as_bytes(), LIMITS)
    assert isinstance(parts, list)
    assert [(p.path, p.content_type, p.filename) for p in parts] == [("1", "text/plain", None),
                                                                      ("2", "text/html", None)]
    assert check_message(parts, LIMITS) == []


def test_a_message_without_mime_headers_is_its_text() -> None:
    parts = mime_parts(b"Subject: x\r\n\r\nBonjour\r\n", LIMITS)
    assert isinstance(parts, list) and [(p.path, p.content_type, p.depth) for p in parts] == [("1", "", 0)]
    assert check_message(parts, LIMITS) == []


def test_a_text_file_attached_is_an_attachment() -> None:
    got = decide(mail(("Résultats\n".encode("latin-1"), "text/plain", "resultats.txt")))
    assert isinstance(got, list) and [a.kind for a in got] == [Kind.TEXT]


DSN = b"""\
From: MAILER-DAEMON@test-operator.mssante.fr
To: 279035121518989@patient.mssante.fr
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

Votre message n'a pas pu etre distribue.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.test-operator.mssante.fr

Final-Recipient: rfc822; dr.martin@test-operator.mssante.fr
Action: failed
Status: 5.1.1

--b1
Content-Type: text/rfc822-headers

From: 279035121518989@patient.mssante.fr
Subject: Question

--b1--
"""


def test_a_bounce_to_a_patient_passes() -> None:
    parts = mime_parts(DSN.replace(b"\n", b"\r\n"), LIMITS)
    assert isinstance(parts, list)
    assert [(p.path, p.content_type) for p in parts] == [
        ("1", "text/plain"), ("2", "message/delivery-status"), ("3", "text/rfc822-headers")]
    assert b"Action: failed" in parts[1].content
    assert check_message(parts, LIMITS) == []


def test_a_read_receipt_passes() -> None:
    mdn = (b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=disposition-notification; "
           b"boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nMessage lu.\r\n--m\r\n"
           b"Content-Type: message/disposition-notification\r\n\r\nFinal-Recipient: rfc822; a@b\r\n"
           b"Disposition: manual-action/MDN-sent-manually; displayed\r\n\r\n--m--\r\n")
    assert decide(mdn) == []


def test_a_detached_smime_signature_is_not_an_attachment() -> None:
    signature = b"\x30\x81\xca" + b"\x06\x09" + b"\x00" * 200  # one DER SEQUENCE of 202 bytes
    assert classify(part(signature, "smime.p7s", "application/pkcs7-signature"), LIMITS) is None
    assert classify(part(signature, "smime.p7s", "application/x-pkcs7-signature"), LIMITS) is None
    # not DER, or too big to be a signature: classified by content like anything else
    assert isinstance(classify(part(b"MZ" + signature, "smime.p7s", "application/pkcs7-signature"), LIMITS), Decision)
    assert isinstance(classify(part(signature + b"\x00" * 70000, "smime.p7s", "application/pkcs7-signature"),
                                LIMITS), Decision)


def test_an_inline_text_with_a_file_name_is_an_attachment() -> None:
    got = classify(part(b"#!/bin/sh\n", "notes.txt", "text/plain", "inline"), LIMITS)
    assert_refused(got, 554, "5.6.1", "attachment_forbidden", "notes.txt")
    # and a text/* body explicitly marked attachment without a name too, named by its part number
    d = classify(part(b"\x00\x01binary", None, "text/plain", "attachment", path="3.1"), LIMITS)
    d = assert_refused(d, 554, "5.6.1", "attachment_forbidden")
    assert d.fr.endswith(": partie 3.1") and d.en.endswith(": part 3.1")


# --- MIME structure ------------------------------------------------------------------------


def _forwarded(inner: bytes) -> bytes:
    return (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n"
            b"--outer\r\nContent-Type: text/plain\r\n\r\nVoir le message transfere.\r\n"
            b"--outer\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--outer--\r\n")


def test_a_forbidden_attachment_inside_a_forwarded_message_is_refused() -> None:
    inner = mail((pe_bytes(), "application/pdf", "ordonnance.pdf")).replace(b"\n", b"\r\n")
    parts = mime_parts(_forwarded(inner), LIMITS)
    assert isinstance(parts, list)
    assert [(p.path, p.depth) for p in parts] == [("1", 1), ("2.1", 3), ("2.2", 3)]
    assert_refused(check_message(parts, LIMITS), 554, "5.6.1", "attachment_forbidden", "ordonnance.pdf")
    harmless = mail((pdf_bytes(), "application/pdf", "ordonnance.pdf")).replace(b"\n", b"\r\n")
    got = decide(_forwarded(harmless))
    assert isinstance(got, list) and [(a.part.path, a.kind) for a in got] == [("2.2", Kind.PDF)]


def test_imap_part_numbers() -> None:
    m = EmailMessage()
    m.set_content("texte")
    m.add_alternative("<p>texte</p>", subtype="html")
    m.add_attachment(pdf_bytes(), maintype="application", subtype="pdf", filename="a.pdf")
    single = b"Content-Type: text/plain\r\n\r\nseul\r\n"
    parts = mime_parts(m.as_bytes(), LIMITS)
    assert isinstance(parts, list)
    assert [(p.path, p.depth) for p in parts] == [("1.1", 2), ("1.2", 2), ("2", 1)]
    enclosed = mime_parts(_forwarded(single), LIMITS)
    assert isinstance(enclosed, list) and [p.path for p in enclosed] == ["1", "2.1"]


def _nested(levels: int) -> bytes:
    out = b"MIME-Version: 1.0\r\n"
    for i in range(levels):
        out += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
    out += b"Content-Type: text/plain\r\n\r\nfond\r\n"
    for i in reversed(range(levels)):
        out += b"--b%d--\r\n" % i
    return out


def test_mime_depth_is_bounded() -> None:
    assert isinstance(mime_parts(_nested(10), LIMITS), list)  # the leaf at depth 10
    d = assert_refused(mime_parts(_nested(11), LIMITS), 554, "5.6.0", "mime_structure")
    assert "10 niveaux au plus" in d.fr


def test_very_deep_nesting_is_refused_quickly() -> None:
    started = time.monotonic()
    assert_refused(mime_parts(_nested(3000), LIMITS), 554, "5.6.0", "mime_structure")
    assert time.monotonic() - started < 5


def test_number_of_parts_is_bounded() -> None:
    def many(n: int) -> bytes:
        return (b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
                + b"--x\r\nContent-Type: text/plain\r\n\r\nx\r\n" * n + b"--x--\r\n")
    assert isinstance(mime_parts(many(100), LIMITS), list)
    d = assert_refused(mime_parts(many(101), LIMITS), 554, "5.6.0", "mime_structure")
    assert "Trop de parties MIME (100 au plus)" == d.fr
    # a flood of empty parts stops the parser early instead of building every part
    started = time.monotonic()
    flood = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--x\r\n\r\n" * 500_000 + b"--x--\r\n"
    assert_refused(mime_parts(flood, LIMITS), 554, "5.6.0", "mime_structure")
    assert time.monotonic() - started < 5


def test_multipart_without_boundary_is_refused() -> None:
    raw = b"Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: application/x-msdownload\r\n\r\nMZ\r\n"
    assert_refused(mime_parts(raw, LIMITS), 554, "5.6.0", "mime_structure")


# --- file names ------------------------------------------------------------------------------


def _with_disposition(disposition: bytes, content: bytes = b"") -> bytes:
    content = content or pdf_bytes()
    return (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=z\r\n\r\n"
            b"--z\r\nContent-Type: text/plain\r\n\r\nBonjour\r\n"
            b"--z\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: " + disposition + b"\r\n\r\n" + base64.encodebytes(content) + b"--z--\r\n")


@pytest.mark.parametrize("disposition, name", [
    # RFC 2047 encoded-word in a quoted parameter (not allowed by RFC 2047 §5, sent by many mailers)
    (b'attachment; filename="=?UTF-8?B?' + base64.b64encode("compte-rendu é.pdf".encode()) + b'?="',
     "compte-rendu é.pdf"),
    (b'attachment; filename="=?ISO-8859-1?Q?r=E9sultat=2Epdf?="', "résultat.pdf"),
    # RFC 2231 §4 charset and §3 continuations
    (b"attachment; filename*=UTF-8''r%C3%A9sultat%20biologie.pdf", "résultat biologie.pdf"),
    (b"attachment; filename*0*=UTF-8''r%C3%A9; filename*1=sultat.pdf", "résultat.pdf"),
    # raw UTF-8 in the header (RFC 6532)
    ('attachment; filename="ordonnance é.pdf"'.encode(), "ordonnance é.pdf"),
])
def test_encoded_file_names_are_decoded(disposition: bytes, name: str) -> None:
    parts = mime_parts(_with_disposition(disposition), LIMITS)
    assert isinstance(parts, list) and parts[1].filename == name
    got = check_message(parts, LIMITS)
    assert isinstance(got, list) and got[0].part.filename == name


def test_non_ascii_file_name_is_shown_safely() -> None:
    got = decide(mail((pe_bytes(), "application/pdf", "résumé ☃\u202efdp.exe")))
    d = assert_refused(got, 554, "5.6.1", "attachment_forbidden", "r?sum? ??fdp.exe")
    assert d.smtp().isascii()


def test_hostile_file_names_cannot_break_the_reply_line() -> None:
    name = "a\r\n250 OK\r\n" + "x" * 500 + ".pdf"
    d = assert_refused(classify(part(pe_bytes(), name, "application/pdf"), LIMITS), 554, "5.6.1",
                       "attachment_forbidden", "a??250 OK??xxx")
    assert "\r" not in d.smtp() and "\n" not in d.smtp()
    shown = d.fr.split("): ", 1)[1]
    assert len(shown) == 80 and shown.endswith("...")


def test_worst_case_reply_fits_one_smtp_line() -> None:
    d = classify(part(png_bytes(), "é" * 300, "application/" + "x" * 300), LIMITS)
    assert_refused(d, 554, "5.6.1", "attachment_mismatch", "?" * 77 + "...")


def test_part_repr_never_shows_the_content() -> None:
    assert "secret" not in repr(part(b"secret health data", "a.txt", "text/plain"))


# --- never raise ------------------------------------------------------------------------


MIME_PIECES = st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: message/delivery-status\r\n", b"Content-Type: multipart/digest; boundary=b\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Transfer-Encoding: x-uuencode\r\n", b"Content-Disposition: attachment; filename*0*=x''%ZZ\r\n",
    b"Content-Disposition: attachment; filename=\"=?x-unknown?B?????=\"\r\n",
    b"Content-Disposition: attachment; filename*=utf-8''%E9%\r\n", b"Content-Type: text/plain; name=\"\xff\xfe\"\r\n",
    b"\r\n", b"--b\r\n", b"--b--\r\n", b"begin 644 x\r\n", b"=\r\n", b"TVo=\r\n", b"\xff\x00\r\n",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=2000), st.lists(st.one_of(MIME_PIECES, st.binary(max_size=20)),
                                                     max_size=60).map(b"".join)))
def test_mime_parts_and_check_message_never_raise(raw: bytes) -> None:
    limits = AttachmentLimits(max_parts=5, max_depth=3)
    parts = mime_parts(raw, limits)
    assert isinstance(parts, (list, Decision))
    if isinstance(parts, list):
        assert all(isinstance(p, Part) for p in parts)
        got = check_message(parts, limits)
        assert isinstance(got, (list, Decision))
        if isinstance(got, Decision):
            assert got.smtp().isascii() and got.smtp().isprintable()


CONTENT_PREFIXES = st.sampled_from([
    b"", b"PK\x03\x04", b"<?xml version='1.0'?>", b"%PDF-", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"MZ",
    b"<ClinicalDocument xmlns='urn:hl7-org:v3'", b"\xef\xbb\xbf<", b"\xff\xfe<\x00", b"{\\rtf1", b"#!"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.builds(
    Part,
    path=st.text(max_size=10), filename=st.none() | st.text(max_size=30),
    content_type=st.sampled_from(["", "text/plain", "application/pdf", "application/zip",
                                  "application/pkcs7-signature", "message/delivery-status"]) | st.text(max_size=20),
    disposition=st.sampled_from([None, "inline", "attachment"]),
    content=st.one_of(st.binary(max_size=300), st.tuples(CONTENT_PREFIXES, st.binary(max_size=300)).map(b"".join),
                      st.sampled_from([zip_bytes({"a": b"b"}), xdm_bytes()]).flatmap(
                          lambda z: st.integers(0, len(z) - 1).map(lambda i: z[:i] + b"\xff" + z[i + 1:]))),
    depth=st.integers(0, 20)), max_size=4))
def test_classify_never_raises_on_any_part(parts: list[Part]) -> None:
    limits = AttachmentLimits(max_part_bytes=200, max_total_bytes=400)
    got = check_message(parts, limits)
    assert isinstance(got, (list, Decision))
    if isinstance(got, Decision):
        line = got.smtp()
        assert line.isascii() and line.isprintable() and len(line) <= 510


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_sniff_and_check_zip_never_raise(data: bytes) -> None:
    assert sniff(data) is None or isinstance(sniff(data), Kind)
    assert check_zip(b"PK\x03\x04" + data, LIMITS) is None or True
    assert check_zip(data + b"PK\x05\x06" + data[:18], LIMITS) is None or True


# --- review regressions: what the exemptions must not let through --------------------------------


def _part(content: bytes, ctype: str, filename: str | None = None, disposition: str | None = "attachment") -> Part:
    return Part("2", filename, ctype, disposition, content, 1)


def test_a_script_declared_as_smime_signature_is_an_attachment() -> None:
    script = b"0||new ActiveXObject('WScript.Shell').Run('calc.exe')"
    got = classify(_part(script, "application/pkcs7-signature", "facture.js"), AttachmentLimits())
    assert isinstance(got, Decision) and got.code == 554
    got = classify(_part(script, "application/pkcs7-signature", None), AttachmentLimits())
    assert isinstance(got, Decision) and got.code == 554  # not one DER SEQUENCE


def test_a_real_detached_signature_shape_is_exempt() -> None:
    body = b"\x02\x01\x01" * 100
    der = b"\x30\x82" + len(body).to_bytes(2, "big") + body
    assert classify(_part(der, "application/pkcs7-signature", "smime.p7s"), AttachmentLimits()) is None
    assert classify(_part(der + b"junk", "application/pkcs7-signature", "smime.p7s"), AttachmentLimits()) \
        is not None


def test_other_text_subtypes_and_binary_report_parts_are_checked() -> None:
    got = classify(_part(b"#!/bin/sh\nrm -rf ~\n", "text/x-shellscript", None, "inline"), AttachmentLimits())
    assert isinstance(got, Decision) and got.code == 554
    got = classify(_part(b"MZ\x90\x00" + b"\x00" * 100, "message/delivery-status", None, None), AttachmentLimits())
    assert isinstance(got, Decision)
    report = b"Reporting-MTA: dns; mx.example.fr\r\n\r\nFinal-Recipient: rfc822; a@b.fr\r\nAction: failed\r\n"
    assert classify(_part(report, "message/delivery-status", None, None), AttachmentLimits()) is None
