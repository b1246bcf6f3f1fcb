"""Writes the seed corpus of the fuzz harnesses into tests/fuzz/corpus/<harness>/.

The seeds are small on purpose (libFuzzer mutates small inputs best): the real ANS
examples of /work/shared/data (the 2025-03-13 trust list, the CDA documents of
ansforge/TestContenuCDA) cut down to what the parsers read (the CDA header, the first
entries of the list, still without its root end tag as published), IHE_XDM packages
built from them as tests/unit/test_xdm.py builds them, and a few handcrafted MIME
messages and SMTP streams. Files named regress-* are inputs that once broke a parser:
they are kept as they are and never rewritten here.

    python tests/fuzz/make_corpus.py        # from the repository root
"""
from __future__ import annotations

import base64
import io
import re
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared/data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")

TINY_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
            b"trailer<</Root 1 0 R>>\n%%EOF\n")


def cda_header(name: str) -> bytes:
    """A real CDA cut before its body, comments dropped: the header is what we read."""
    text = (DATA / "cda" / name).read_text(encoding="utf-8")
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"\n\s*\n", "\n", text)
    head = text[:text.index("<component>")]
    return (head + "</ClinicalDocument>\n").encode()


def cda_level1() -> bytes:
    """The ANS level-1 biology report, its wrapped PDF replaced by a tiny one."""
    text = (DATA / "cda" / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_text(encoding="utf-8")
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r'(representation="B64">)[^<]*(<)', lambda m: m.group(1) + base64.b64encode(TINY_PDF).decode()
                  + m.group(2), text)
    return text.encode()


def cda_seeds() -> dict[str, bytes]:
    return {
        "ldl-ses-header.xml": cda_header("LDL-SES_2022.01.xml"),
        "cse-cs8-header.xml": cda_header("CSE-CS8_2024.01.xml"),
        "biology-level1.xml": cda_level1(),
        "minimal.xml": (b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>CR</title>'
                        b'<code code="11490-0" codeSystem="2.16.840.1.113883.6.1"/><effectiveTime value="20240102+0100"/>'
                        b'<recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>'
                        b'</patientRole></recordTarget><author><assignedAuthor><id root="1.2.250.1.71.4.2.1" '
                        b'extension="810002909371"/></assignedAuthor></author></ClinicalDocument>'),
        "doctype.xml": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><ClinicalDocument xmlns="urn:hl7-org:v3"/>',
    }


def trust_list_seeds() -> dict[str, bytes]:
    text = (DATA / "listeblanchemssante-2025-03-13.xml").read_text(encoding="utf-8")
    head = text[:text.index("<Domaine>")]
    entries = re.findall(r"<Domaine>.*?</Domaine>\s*", text, flags=re.DOTALL)
    # test-operator.mssante.fr-like entries of the real list: the first five, as published
    # (no </ListeBlancheMSSante>), and the same list well-formed
    five = head + "".join(entries[:5]) + "</ListeDomaines>\n"
    return {
        "real-first-five.xml": five.encode(),
        "real-first-five-closed.xml": (five + "</ListeBlancheMSSante>\n").encode(),
        "truncated-inside.xml": (head + entries[0] + entries[1][:40]).encode(),
    }


def xdm_seeds() -> dict[str, bytes]:
    from tests.unit import test_xdm as t  # the builders of the unit tests: same packages
    small_cda = cda_seeds()["minimal.xml"]
    ldl = t.ldl_entry(content=cda_header("LDL-SES_2022.01.xml"))
    bio = t.biology_entry(content=TINY_PDF)
    raw = {
        "xdm-two-documents.zip": t.package([ldl, bio]),
        "xdm-stored.zip": t.package([t.ldl_entry(content=small_cda)], compression=zipfile.ZIP_STORED),
        "xdm-dotdot-uri.zip": t.package([t.ldl_entry(content=small_cda, uri="../x.xml")]),
        "xdm-exe-declared-pdf.zip": t.package([t.biology_entry(content=b"MZ\x90\x00" + b"\x00" * 60)]),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", b"<Types/>")
        z.writestr("word/document.xml", b"<w:document/>")
    raw["docx.zip"] = out.getvalue()
    # the harness reads an even first byte as "the rest is the zip"
    seeds = {name: b"\x00" + data for name, data in raw.items()}
    # odd first byte: a description that fuzz_xdm.build writes with zipfile
    meta = t.metadata([t.ldl_entry(content=small_cda, hash=None, size=None)])
    seeds["built-metadata-and-doc"] = (b"\x01" + bytes([0, 1]) + len(meta).to_bytes(2, "big") + meta
                                       + bytes([1, 0]) + len(small_cda).to_bytes(2, "big") + small_cda)
    return seeds


def mime_seeds() -> dict[str, bytes]:
    pdf = base64.encodebytes(TINY_PDF).replace(b"\n", b"\r\n")
    head = (b"From: Dr Martin <dr.martin@test-operator.mssante.fr>\r\nTo: <279035121518989@patient.mssante.fr>\r\n"
            b"Message-ID: <m1@test-operator.mssante.fr>\r\nMIME-Version: 1.0\r\n")
    return {
        "plain.eml": head + b"Subject: Compte rendu\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBonjour,\r\n",
        "pdf-attachment.eml": head + b"Subject: =?utf-8?Q?R=C3=A9sultats?= [FIN]\r\nX-MSS-MES: FIN\r\n"
        b"In-Reply-To: <a@b> (comment) <c@d>\r\nReferences: <a@b>\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n--b1\r\n'
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"R=E9sultats ci-joints.=\r\n\r\n--b1\r\nContent-Type: application/pdf; name=\"cr.pdf\"\r\n"
        b"Content-Disposition: attachment; filename*0*=utf-8''r%C3%A9; filename*1=sultat.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + pdf + b"--b1--\r\nepilogue\r\n",
        "nested.eml": head + b"Subject: Fwd\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\n"
        b"Content-Type: message/rfc822\r\n\r\nFrom: a@b.fr\r\nSubject: inner\r\n"
        b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        b"--inner\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--inner--\r\n--outer\r\n"
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: digest part\r\n\r\ny\r\n--d--\r\n"
        b"--outer--\r\n",
        "report.eml": head + b"Subject: Non distribue\r\nContent-Type: multipart/report; report-type=delivery-status;"
        b" boundary=r\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nEchec\r\n--r\r\n"
        b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; a@b\r\n"
        b"Action: failed\r\nStatus: 5.1.1\r\n--r\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: x\r\n--r--\r\n",
        "addresses.eml": b'From: "Doe, John" <j.doe@x.fr>, Equipe: a@b.fr, (Marc) m@c.fr;,\r\n'
        b"Reply-To: <@route,@r2:dr@ch.mssante.fr>\r\nCc: undisclosed-recipients:;\r\nTo: x) <y@z>\r\n\r\n",
        "exe-as-pdf.eml": head + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=cr.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\r\n--b--\r\n",
    }


def smtp_data_seeds() -> dict[str, bytes]:
    # first byte: the limit's index in fuzz_smtp_data.LIMITS; three bytes: read sizes
    def seed(limit: int, sizes: bytes, stream: bytes) -> bytes:
        return bytes([limit]) + sizes + stream
    return {
        "message-and-quit": seed(11, b"\x05\x07\x02", b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"),
        "stuffed": seed(8, b"\x01\x02\x03", b"..first\r\nmid\r\n..\r\n...x\r\n.\r\n"),
        "empty": seed(0, b"\x01\x01\x01", b".\r\nMAIL FROM:<a@b>\r\n"),
        "smuggling": seed(11, b"\x03\x04\x05", b"x\n.\r\nMAIL FROM:<e@v>\r\nx\r.\r\nRCPT TO:<z@w>\r\nmore\r\n.\r\n"),
        "over-limit": seed(7, b"\x60\x60\x60", b"A" * 200 + b"\r\n.\r\nQUIT\r\n"),
        "hangup": seed(11, b"\x10\x10\x10", b"Subject: x\r\nno end"),
    }


def ins_address_seeds() -> dict[str, bytes]:
    values = ["279035121518989@patient.mssante.fr", "185022A12345682@PATIENT.MSSANTE.FR.",
              "<297122b00100160@patient.mssante.fr>", "reponse.automatique-test@patient.mssante.fr",
              "Postmaster@patient.mssante.fr", "dr.martin@test-operator.mssante.fr", "223042545611404",
              "\uff12\uff17\uff19035121518989@patient.mssante.fr", "[127.0.0.1]", "mail.test-operator.mssante.fr"]
    return {f"value-{i:02d}": v.encode() for i, v in enumerate(values)}


def write(name: str, seeds: dict[str, bytes]) -> None:
    folder = HERE / "corpus" / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if not old.name.startswith("regress-"):
            old.unlink()
    for file, data in seeds.items():
        (folder / file).write_bytes(data)
    print(f"{name}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    write("smtp_data", smtp_data_seeds())
    write("mime", mime_seeds())
    write("xdm", xdm_seeds())
    write("cda", cda_seeds())
    write("ins_addresses", ins_address_seeds())
    write("trustlist", trust_list_seeds())
