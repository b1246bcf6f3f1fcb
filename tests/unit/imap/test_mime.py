"""policy/mime.py: one parse of a stored message, reused by FETCH, SEARCH and the attachment rules.

The real-shaped messages below are shared with test_fetch.py and test_search.py. Each
is built from its pieces, so the tests can state exact offsets and sizes.
"""
from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import mime
from policy.mime import Address, decode_header, find, parse, parse_addresses


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def b64_lines(data: bytes) -> bytes:
    """Base64 in 76-column CRLF lines, without the last line end (it belongs to the
    boundary that follows)."""
    return base64.encodebytes(data).rstrip(b"\n").replace(b"\n", b"\r\n")


# --- a plain French message: 8-bit UTF-8 body, RFC 2047 subject ---------------------

PLAIN_HEADER = crlf("""\
Return-Path: <labo@biologie.mssante.fr>
Date: Tue, 14 May 2024 09:30:00 +0200
From: =?utf-8?q?Laboratoire_Sant=C3=A9?= <labo@biologie.mssante.fr>
To: Jeanne Martin <jeanne.martin@patient.mssante.fr>
Subject: =?utf-8?q?R=C3=A9sultats?= de votre bilan
Message-ID: <20240514093000.4F2A@biologie.mssante.fr>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

""")
PLAIN_BODY = crlf("""\
Bonjour Madame Martin,

Vos résultats d'analyses sont disponibles.
Le taux d'hémoglobine est normal.

Cordialement,
Le laboratoire
""")
PLAIN = PLAIN_HEADER + PLAIN_BODY

# --- multipart/mixed: a quoted-printable text and a base64 PDF attachment -----------

PDF = (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
       + bytes(range(256)) + b"\n%%EOF\n")
MIXED_HEADER = crlf("""\
Date: Wed, 15 May 2024 16:05:12 +0200
From: "Dr. Anne Leroy" <anne.leroy@chu-exemple.mssante.fr>
To: jeanne.martin@patient.mssante.fr
Subject: Compte rendu de consultation
Message-ID: <cr-42@chu-exemple.mssante.fr>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="=_frontiere_42"

""")
MIXED_TEXT_HEADER = crlf("""\
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

""")
MIXED_TEXT = crlf("""\
Veuillez trouver ci-joint le compte rendu de votre consultation du 15 mai=
 2024. Vos r=C3=A9sultats d'imagerie sont normaux.
Bien cordialement,
Dr Leroy""")
MIXED_PDF_HEADER = crlf("""\
Content-Type: application/pdf; name="CR.pdf"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="CR.pdf"

""")
MIXED_PDF_BODY = b64_lines(PDF)
MIXED_BODY = (b"Ceci est un message au format MIME.\r\n--=_frontiere_42\r\n"
              + MIXED_TEXT_HEADER + MIXED_TEXT + b"\r\n--=_frontiere_42\r\n"
              + MIXED_PDF_HEADER + MIXED_PDF_BODY + b"\r\n--=_frontiere_42--\r\n")
MIXED = MIXED_HEADER + MIXED_BODY

# --- multipart/alternative inside multipart/mixed, with extension data ---------------

ALT_PLAIN_HEADER = crlf("""\
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable
Content-Language: fr

""")
ALT_PLAIN = crlf("Votre rendez-vous est confirm=C3=A9 pour le 20 mai =C3=A0 10h.\n")
ALT_HTML_HEADER = crlf("""\
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 8bit
Content-Location: https://chu-exemple.fr/rdv/20-mai.html

""")
ALT_HTML = crlf("<p>Votre rendez-vous est confirmé pour le <b>20 mai</b> à 10h.</p>\n"
                '<img src="cid:logo@chu-exemple.fr">')
PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)
ALT_IMAGE_HEADER = crlf("""\
Content-Type: image/png
Content-Transfer-Encoding: base64
Content-ID: <logo@chu-exemple.fr>
Content-Description: Logo du CHU
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Disposition: inline

""")
ALT_IMAGE = b64_lines(PNG)
ALT_INNER = (b"--alt-7\r\n" + ALT_PLAIN_HEADER + ALT_PLAIN + b"\r\n--alt-7\r\n"
             + ALT_HTML_HEADER + ALT_HTML + b"\r\n--alt-7--\r\n")
ALTERNATIVE = crlf("""\
Date: Fri, 17 May 2024 08:12:00 +0200
From: rdv@chu-exemple.mssante.fr
To: jeanne.martin@patient.mssante.fr
Subject: Confirmation de rendez-vous
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=mix-7

--mix-7
Content-Type: multipart/alternative; boundary="alt-7"

""") + ALT_INNER + b"\r\n--mix-7\r\n" + ALT_IMAGE_HEADER + ALT_IMAGE + b"\r\n--mix-7--\r\n"

# --- a forwarded message (message/rfc822) whose enclosed message is multipart --------

INNER_HEADER = crlf("""\
Date: Mon, 13 May 2024 08:00:00 +0200
From: Secretariat <secretariat@chu-exemple.mssante.fr>
To: "Dr. Anne Leroy" <anne.leroy@chu-exemple.mssante.fr>
Subject: Convocation
Message-ID: <conv-1@chu-exemple.mssante.fr>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="inner"

""")
INNER_TEXT_HEADER = crlf("Content-Type: text/plain; charset=us-ascii\n\n")
INNER_TEXT = crlf("Rendez-vous le 20 mai a 10h.\nMerci.")
INNER_BIN_HEADER = crlf("Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n")
INNER_BIN = b"AAECAwQ="
INNER_BODY = (b"--inner\r\n" + INNER_TEXT_HEADER + INNER_TEXT + b"\r\n--inner\r\n"
              + INNER_BIN_HEADER + INNER_BIN + b"\r\n--inner--\r\n")
INNER = INNER_HEADER + INNER_BODY
FWD_TEXT_HEADER = crlf("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n")
FWD_TEXT = crlf("Je vous transfère la convocation.\nDr Leroy")
FWD_MSG_HEADER = crlf("Content-Type: message/rfc822\nContent-Description: Message transfere\n\n")
FORWARDED = crlf("""\
Date: Mon, 13 May 2024 09:00:00 +0200
From: anne.leroy@chu-exemple.mssante.fr
To: jeanne.martin@patient.mssante.fr
Subject: Fwd: Convocation
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
""") + FWD_TEXT_HEADER + FWD_TEXT + b"\r\n--outer\r\n" + FWD_MSG_HEADER + INNER + b"\r\n--outer--\r\n"

# --- a group address, no Sender, no Reply-To, a raw 8-bit subject ---------------------

GROUP = crlf("""\
Date: Thu, 16 May 2024 11:00:00 +0200
From: =?utf-8?q?Centre_de_sant=C3=A9?= <contact@cds-exemple.mssante.fr>
To: Patients du Dr Leroy: jeanne.martin@patient.mssante.fr,
 "Paul Durand" <paul.durand@patient.mssante.fr>;
Cc: undisclosed-recipients:;
Subject: Fermeture exceptionnelle du centre de santé
Message-ID: <fermeture@cds-exemple.mssante.fr>
In-Reply-To: <question-9@patient.mssante.fr>

Le centre sera fermé le 20 mai.
""")

# --- a real CDA document (a discharge letter) attached as text/xml, base64 -------------

# the shared folder sits beside the repository (../shared), wherever the checkout is
CDA_PATH = Path(__file__).resolve().parents[4] / "shared/data/cda/LDL-SES_2022.01.xml"
CDA_PART_HEADER = crlf("""\
Content-Type: text/xml; charset=utf-8; name="LDL-SES.xml"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="LDL-SES.xml"

""")


def cda_message() -> tuple[bytes, bytes, bytes]:
    """(message, the CDA document, the base64 body of its part)."""
    cda = CDA_PATH.read_bytes()
    encoded = b64_lines(cda)
    message = crlf("""\
Date: Tue, 21 May 2024 14:00:00 +0200
From: "Service de cardiologie" <cardio@chu-exemple.mssante.fr>
To: jeanne.martin@patient.mssante.fr
Subject: Lettre de liaison
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="cda-1"

--cda-1
Content-Type: text/plain; charset=utf-8

Veuillez trouver votre lettre de liaison en pièce jointe.
--cda-1
""") + CDA_PART_HEADER + encoded + b"\r\n--cda-1--\r\n"
    return message, cda, encoded


# --- tests ---------------------------------------------------------------------------

def test_plain_message_is_one_text_part_with_exact_slices() -> None:
    tree = parse(PLAIN)
    assert (tree.header, tree.body) == (PLAIN_HEADER, PLAIN_BODY)
    assert (tree.start, tree.body_start, tree.end) == (0, len(PLAIN_HEADER), len(PLAIN))
    assert (tree.type, tree.subtype, tree.params) == ("text", "plain", (("charset", "utf-8"),))
    assert tree.encoding == "8bit"
    assert tree.lines == PLAIN_BODY.count(b"\n") == 7
    assert tree.children == () and tree.message is None
    assert tree.get("subject") == b"=?utf-8?q?R=C3=A9sultats?= de votre bilan"
    assert "hémoglobine" in tree.text()


def test_multipart_parts_end_before_the_crlf_of_the_boundary() -> None:
    tree = parse(MIXED)
    text, pdf = tree.children
    assert text.header == MIXED_TEXT_HEADER and text.body == MIXED_TEXT
    assert pdf.header == MIXED_PDF_HEADER and pdf.body == MIXED_PDF_BODY
    assert MIXED[pdf.body_start:pdf.end] == MIXED_PDF_BODY
    assert (pdf.disposition, pdf.disposition_params) == ("attachment", (("filename", "CR.pdf"),))
    assert pdf.params == (("name", "CR.pdf"),) and pdf.lines is None
    assert pdf.decoded() == PDF
    assert text.decoded().decode().startswith(
        "Veuillez trouver ci-joint le compte rendu de votre consultation du 15 mai 2024.")
    # Dovecot counts LFs: the last line's CRLF belongs to the boundary
    assert text.lines == 3


def test_alternative_inside_mixed_and_extension_fields() -> None:
    tree = parse(ALTERNATIVE)
    alternative, image = tree.children
    plain, html = alternative.children
    assert alternative.body == ALT_INNER
    assert (plain.body, html.body, image.body) == (ALT_PLAIN, ALT_HTML, ALT_IMAGE)
    assert plain.language == ("fr",)
    assert html.location == "https://chu-exemple.fr/rdv/20-mai.html"
    assert (image.id, image.description, image.md5) == ("<logo@chu-exemple.fr>", "Logo du CHU",
                                                       "Q2hlY2sgSW50ZWdyaXR5IQ==")
    assert image.disposition == "inline" and image.decoded() == PNG
    assert find(tree, (1, 2)) is html and find(tree, (2,)) is image
    assert find(tree, (3,)) is None and find(tree, (2, 1)) is None


def test_message_rfc822_encloses_a_parsed_message() -> None:
    tree = parse(FORWARDED)
    text, forwarded = tree.children
    assert text.body == FWD_TEXT
    assert forwarded.header == FWD_MSG_HEADER and forwarded.body == INNER
    inner = forwarded.message
    assert inner is not None
    assert inner.header == INNER_HEADER and inner.body == INNER_BODY
    assert forwarded.lines == INNER.count(b"\n")
    # RFC 3501 §6.4.5: 2.1 and 2.2 are the enclosed message's parts
    assert find(tree, (2, 1)).body == INNER_TEXT
    assert find(tree, (2, 2)).decoded() == b"\x00\x01\x02\x03\x04"
    assert [p.subtype for p in tree.walk()] == ["mixed", "plain", "rfc822", "mixed", "plain", "octet-stream"]


def test_part_one_of_a_non_multipart_message_is_its_body() -> None:
    tree = parse(PLAIN)
    assert find(tree, ()) is tree and find(tree, (1,)) is tree
    assert find(tree, (2,)) is None and find(tree, (1, 1)) is None


def test_part_numbers_through_a_non_multipart_enclosed_message() -> None:
    raw = crlf("Content-Type: message/rfc822\n\nSubject: inner\n\nhello\n")
    tree = parse(raw)
    assert tree.message is not None
    assert find(tree, (1,)) is tree  # part 1 of the top message is its body
    assert find(tree, (1, 1)) is tree.message  # the enclosed message's only part
    assert find(tree, (1, 1)).body == b"hello\r\n"


def test_cda_attachment_decodes_to_the_document() -> None:
    message, cda, encoded = cda_message()
    tree = parse(message)
    xml = tree.children[1]
    assert xml.body == encoded and xml.decoded() == cda
    assert "Lettre de liaison à la sortie" in xml.text()


def test_digest_parts_default_to_message_rfc822() -> None:
    raw = crlf('Content-Type: multipart/digest; boundary="d"\n\n--d\n\nSubject: one\n\nbody\n--d--\n')
    child = parse(raw).children[0]
    assert (child.type, child.subtype) == ("message", "rfc822")
    assert child.message is not None and child.message.get("Subject") == b"one"


def test_rfc2231_continuations_are_joined() -> None:
    raw = crlf("Content-Type: application/pdf\nContent-Disposition: attachment;\n"
               " filename*0*=utf-8''R%C3%A9sultats;\n filename*1*=%20mai.pdf; size=12\n\nx")
    part = parse(raw)
    assert part.disposition_params == (("filename*", "utf-8''R%C3%A9sultats%20mai.pdf"), ("size", "12"))


def test_content_fields_without_mime_are_ignored() -> None:
    # Like Dovecot: no MIME-Version and no Content-Type, the Content-* fields mean nothing
    part = parse(crlf("Subject: x\nContent-Transfer-Encoding: base64\n\nhello\n"))
    assert part.encoding is None


# --- header decoding and addresses -----------------------------------------------------

@pytest.mark.parametrize("raw, text", [
    (b"=?utf-8?q?R=C3=A9sultats?= de votre bilan", "Résultats de votre bilan"),
    (b"=?UTF-8?B?UsOpc3VsdGF0cw==?=", "Résultats"),
    (b"=?iso-8859-1?q?R=E9sultats?= =?iso-8859-1?q?_du_labo?=", "Résultats du labo"),  # RFC 2047 §6.2
    (b"=?utf-8*fr?q?caf=C3=A9?=", "café"),  # RFC 2231 §5 language
    (b"=?x-unknown?q?caf=C3=A9?=", "café"),
    (b"=?utf-8?b?not base64?=", "=?utf-8?b?not base64?="),
    (b"Re: r\xc3\xa9sultats\r\n bis", "Re: résultats bis"),  # raw UTF-8 (RFC 6532), folded
    (b"r\xe9sultats", "résultats"),  # raw Latin-1
])
def test_decode_header(raw: bytes, text: str) -> None:
    assert decode_header(raw) == text


def test_address_list_with_group_route_and_comments() -> None:
    found = parse_addresses('"Doe, John" <j.doe@x.fr>, Equipe: a@b.fr, (Marc) m@c.fr;,'
                            ' <@r1,@r2:u@h.fr>, x@y.fr (Yves), nom-seul, <>')
    assert found == [
        Address("Doe, John", None, "j.doe", "x.fr"),
        Address(None, None, "Equipe", None),
        Address(None, None, "a", "b.fr"),
        Address("Marc", None, "m", "c.fr"),
        Address(None, None, None, None),
        Address(None, "@r1,@r2", "u", "h.fr"),
        Address("Yves", None, "x", "y.fr"),
        Address(None, None, "nom-seul", "MISSING_DOMAIN"),
        Address(None, None, "MISSING_MAILBOX", "MISSING_DOMAIN"),
    ]


def test_unterminated_group_is_closed() -> None:
    assert parse_addresses("Liste: a@b.fr") == [Address(None, None, "Liste", None),
                                                Address(None, None, "a", "b.fr"),
                                                Address(None, None, None, None)]


# --- malformed MIME degrades, never raises ----------------------------------------------

def test_multipart_without_boundary_is_text_plain() -> None:
    part = parse(crlf("Content-Type: multipart/mixed\n\n--x\n\nhello\n--x--\n"))
    assert (part.type, part.subtype, part.children) == ("text", "plain", ())
    assert part.lines == 4


def test_multipart_whose_boundary_never_appears_has_one_empty_part() -> None:
    part = parse(crlf('Content-Type: multipart/mixed; boundary="nowhere"\n\nno parts here\n'))
    (child,) = part.children
    assert (child.type, child.size, child.lines, child.header) == ("text", 0, 0, b"")


def test_missing_close_delimiter_ends_the_last_part_at_the_end() -> None:
    part = parse(crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b\n\none\n--b\n\ntwo\n'))
    assert [c.body for c in part.children] == [b"one", b"two\r\n"]


def test_boundary_prefix_of_a_longer_line_is_not_a_delimiter() -> None:
    part = parse(crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b\n\none\n--bb\ntwo\n--b--\n'))
    assert [c.body for c in part.children] == [b"one\r\n--bb\r\ntwo"]


@pytest.mark.parametrize("raw", [
    b"",
    b"\r\n",
    b"no header separator at all",
    b"Subject: only a header\r\n",
    b"\r\nbody without header",
    b"From: a@b\nSubject: bare LF\n\nbody\n",
    b" leading continuation\r\nSubject: x\r\n\r\n",
    b"Content-Type: text\r\nMIME-Version: 1.0\r\n\r\nx",
    b"Content-Type: /\r\nMIME-Version: 1.0\r\n\r\nx",
    b"Content-Type: ;;;=;\"\r\n\r\nx",
    b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: text/plain; charset=rot13\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!Zm9v=YmFy\r\n",
    b"\x00\xff\xfe\r\n\r\n\x00",
])
def test_malformed_messages_parse(raw: bytes) -> None:
    tree = parse(raw)
    for part in tree.walk():
        assert part.start <= part.body_start <= part.end <= len(raw)
        part.text()


def test_encoded_message_rfc822_is_shown_as_text() -> None:
    part = parse(crlf("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
                      "U3ViamVjdDogeA0KDQp5\n"))
    assert (part.type, part.subtype, part.message) == ("text", "plain", None)
    assert part.decoded() == b"Subject: x\r\n\r\ny"


def test_nesting_depth_is_bounded() -> None:
    depth = 200
    raw = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                   for i in range(depth)) + b"\r\nleaf\r\n"
    tree = parse(raw)
    levels, node = 0, tree
    while node.children:
        node, levels = node.children[0], levels + 1
    assert levels == mime.MAX_DEPTH
    assert (node.type, node.subtype) == ("text", "plain")


def test_part_count_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mime, "MAX_PARTS", 5)
    raw = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + b"".join(
        b"--b\r\n\r\npart %d\r\n" % i for i in range(20)) + b"--b--\r\n"
    tree = parse(raw)
    assert len(list(tree.walk())) <= 5
    assert tree.children[-1].body.endswith(b"part 19")  # the last part kept holds the rest


def test_base64_is_decoded_tolerantly() -> None:
    assert mime.decode_cte(b"UsOp\r\nc3Vs!!dGF0cw==\r\n", "BASE64") == "Résultats".encode()
    assert mime.decode_cte(b"UsOpc3VsdGF0c", "base64") == b"R\xc3\xa9sultat"  # truncated
    with pytest.raises(mime.UnknownCte):
        mime.decode_cte(b"begin 644 x", "x-uuencode")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain; charset=\"utf-8\r\n", b"MIME-Version: 1.0\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename*0*=x; filename*1=y\r\n", b"\r\n", b"--b\r\n",
    b"--b--\r\n", b"Subject: =?utf-8?q?=C3?=\r\n", b" folded\r\n", b"=C3=A9=\r\n", b"\xe9\x00\r\n",
    b"To: a:b@c;, <d@e>\r\n",
]), max_size=30))
def test_mime_fragments_never_raise(lines: list[bytes]) -> None:
    raw = b"".join(lines)
    for part in parse(raw).walk():
        assert part.start <= part.body_start <= part.end <= len(raw)
        part.text()
        for f in part.fields:
            decode_header(f.raw)
            parse_addresses(f.value.decode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("value", [")", "pRly-oo:)", "a@b.fr)", "x) <y@z>", "(a)) b@c"])
def test_a_stray_closing_parenthesis_ends(value: str) -> None:
    # Found by tests/fuzz/fuzz_mime.py (corpus/mime/regress-stray-paren): "To: )" made
    # the tokenizer loop for ever, so FETCH ENVELOPE stalled the daemon's event loop.
    found: list[list[Address]] = []
    worker = threading.Thread(target=lambda: found.append(parse_addresses(value)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and found
    assert all(a.mailbox != ")" for a in found[0])


def test_quoted_printable_per_rfc2045() -> None:
    """RFC 2045 §6.7 rules 3 and 5 (imaptest "fetch-binary-mime-qp")."""
    from policy.mime import decode_qp
    raw = (b"hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar\r\n"
           b"foo =\r\n=62\r\nfoo  \r\nbar=\r\n\r\nfoo_bar\r\n")
    assert decode_qp(raw) == (b"hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo b\r\nfoo\r\n"
                              b"bar\r\nfoo_bar\r\n")
    assert decode_qp(b"caf=C3=A9 =ZZ end=") == "café =ZZ end".encode()  # an invalid "=" stays
