"""policy/parsed.py: one parse of a message (issue 15 items 3 and 4): the MIME tree with
byte offsets, the header section read by the one MIME parser with the values the stdlib
compat32 parser gave, and the leaves classified once."""
from __future__ import annotations

import base64
import email.feedparser
from email.parser import BytesHeaderParser
from email.policy import compat32

import pytest

from policy.attachments import AttachmentLimits, Kind
from policy.decisions import Decision
from policy.headers import parse_headers
from policy.mime import decode_cte
from policy.parsed import parse
from tests.unit.test_attachments import pdf_bytes

LIMITS = AttachmentLimits()


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def mixed(pdf: bytes) -> bytes:
    b64 = base64.encodebytes(pdf).decode().replace("\n", "\r\n")
    return crlf(
        "From: Dr Martin <dr.martin@test-operator.mssante.fr>\n"
        "To: 279035121518989@patient.mssante.fr\n"
        "Subject: =?utf-8?q?Compte_rendu_d=27h=C3=A9morragie?=\n"
        "Message-ID: <cr-9@test-operator.mssante.fr>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b1"\n'
        "\n"
        "--b1\n"
        'Content-Type: multipart/alternative; boundary="b2"\n'
        "\n"
        "--b2\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: quoted-printable\n"
        "\n"
        "Bonjour, voici le r=C3=A9sultat du TEST.\n"
        "--b2\n"
        "Content-Type: text/html; charset=utf-8\n"
        "\n"
        "<p>Bonjour</p>\n"
        "--b2--\n"
        "--b1\n"
        "Content-Type: application/pdf\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sultat.pdf\n"
        "\n") + b64.encode() + crlf("--b1--\n")


def test_the_tree_locates_every_part_by_byte_range() -> None:
    raw = mixed(pdf_bytes())
    parsed = parse(raw, LIMITS)
    assert parsed.raw is raw and parsed.head == raw[:raw.index(b"\r\n\r\n") + 2]
    assert not isinstance(parsed.parts, Decision)
    assert [(p.path, p.content_type, p.encoding) for p in parsed.parts] == [
        ("1.1", "text/plain", "quoted-printable"), ("1.2", "text/html", "7bit"), ("2", "application/pdf", "base64")]
    for part in parsed.parts:  # the range and encoding give back the content, byte for byte
        assert part.span is not None
        assert decode_cte(raw[part.span[0]:part.span[1]], part.encoding) == part.content
    # each entity of the tree: its header section and body as byte ranges of the message
    for node in parsed.tree.walk():
        assert raw[node.start:node.body_start] == node.header and raw[node.body_start:node.end] == node.body
    pdf = parsed.parts[2]
    assert pdf.filename == "résultat.pdf"  # RFC 2231, decoded once
    assert not isinstance(parsed.attachments, Decision)
    assert [(a.part.path, a.kind) for a in parsed.attachments] == [("2", Kind.PDF)]
    assert parsed.subject == "Compte rendu d'hémorragie"
    assert parsed.body_text() == "Bonjour, voici le résultat du TEST."  # the CRLF before a boundary is its own


def test_a_refused_part_is_known_once_parsed() -> None:
    raw = mixed(b"MZ\x90\x00" + bytes(200))
    parsed = parse(raw, LIMITS)
    assert isinstance(parsed.attachments, Decision) and parsed.refusal is parsed.attachments
    assert (parsed.refusal.code, parsed.refusal.status) == (554, "5.6.1")


def test_the_body_text_is_not_an_attachment_nor_an_enclosed_message() -> None:
    raw = crlf(
        "Subject: TEST\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n"
        "--x\nContent-Type: message/rfc822\n\nSubject: inner\n\nTEST inside\n"
        "--x\nContent-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n\nTEST attached\n"
        "--x--\n")
    assert parse(raw, LIMITS).body_text() == ""
    assert parse(crlf("Subject: x\n\nplain TEST body\n"), LIMITS).body_text() == "plain TEST body\r\n"


SECTIONS = [
    b"Subject: caf\xc3\xa9 x\r\n  folded\r\nFrom: Andr\xe9 <a@b.fr>\r\nX:  a \r\n\r\n",
    b"From: a@b.fr\r\nReceived: one\r\nReceived: two\r\n\tfolded\r\nTo:\r\nCc: \r\n\r\nbody\r\n",
    b"Message-ID:<x@y>\r\nIn-Reply-To: <a@b>\r\n <c@d>\r\nReferences: <a@b>\r\n\r\n",
    b"Subject: no body at all\r\n",
]


@pytest.mark.parametrize("section", SECTIONS)
def test_headers_read_as_the_stdlib_parser_read_them(section: bytes) -> None:
    """policy/headers.py no longer uses the stdlib parser; what the rules read is unchanged."""
    ours = parse_headers(section)
    stdlib = BytesHeaderParser(policy=compat32).parsebytes(section)
    assert ours.raw_items() == list(stdlib.raw_items())
    for name in {n for n, _ in stdlib.raw_items()} | {"Absent"}:
        assert ours.get(name) == (None if stdlib.get(name) is None else str(stdlib.get(name)))
        assert ours.get_all(name) == (None if stdlib.get_all(name) is None
                                      else [str(v) for v in stdlib.get_all(name)])
        assert (name in ours) == (name in stdlib)


def test_no_stdlib_parser_reads_an_inbound_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def stdlib_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the stdlib email parser read the message")

    monkeypatch.setattr(email.feedparser.FeedParser, "feed", stdlib_parse)
    assert parse_headers(SECTIONS[0])["X"] == "a "
    assert parse(mixed(pdf_bytes()), LIMITS).headers.get("Message-ID") == "<cr-9@test-operator.mssante.fr>"
