"""relay/imap/fetch.py: FETCH data items, byte for byte.

The BODYSTRUCTURE strings are written out by hand from RFC 3501 §7.4.2 in the shape
Dovecot produces (sizes and line counts from the pieces the messages are built of).
Where the RFC leaves room, the choice is Dovecot's:
- types, subtypes and parameters as written in the message (case kept);
- a text part without a charset parameter is reported ("charset" "us-ascii");
- extension data always complete: md5 (or multipart params), disposition, language,
  location; the language is always a list;
- line counts are LF counts of the part body, whose last CRLF belongs to the boundary.
"""
from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.imap import fetch
from relay.imap.fetch import UnknownCte, needs_content, render, sets_seen
from relay.imap.types import FetchAtt, MessageView, Section

from .test_mime import (
    ALT_HTML,
    ALT_IMAGE,
    ALT_PLAIN,
    ALTERNATIVE,
    FORWARDED,
    FWD_MSG_HEADER,
    FWD_TEXT,
    GROUP,
    INNER,
    INNER_BIN,
    INNER_BODY,
    INNER_HEADER,
    INNER_TEXT,
    INNER_TEXT_HEADER,
    MIXED,
    MIXED_BODY,
    MIXED_HEADER,
    MIXED_PDF_BODY,
    MIXED_TEXT,
    PDF,
    PLAIN,
    PLAIN_BODY,
    PLAIN_HEADER,
    cda_message,
    crlf,
)

PARIS = dt.timezone(dt.timedelta(hours=2))


def view(raw: bytes = b"", uid: int = 5, flags: frozenset[str] = frozenset({"\\Seen"}),
         recent: bool = False) -> MessageView:
    return MessageView(seq=1, uid=uid, flags=flags, size=len(raw), recent=recent,
                       internal_date=dt.datetime(2024, 5, 14, 9, 31, 2, tzinfo=PARIS))


def body(*part: int, text: str | None = None, fields: tuple[str, ...] = (), peek: bool = False,
         partial: tuple[int, int] | None = None) -> FetchAtt:
    return FetchAtt("BODY", Section(part, text, fields), peek=peek, partial=partial)


def fetch_one(raw: bytes, *atts: FetchAtt, rev2: bool = False, **kw: object) -> bytes:
    return render(view(raw, **kw), list(atts), raw, rev2=rev2)  # type: ignore[arg-type]


def lit(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def well_framed(data: bytes) -> bool:
    """A client's view: quoted strings, literals (and literal8), atoms and balanced
    parentheses, nothing else, and the whole response consumed."""
    i, depth = 0, 0
    while i < len(data):
        c = data[i:i + 1]
        if c == b"(":
            depth += 1
        elif c == b")":
            depth -= 1
            if depth < 0:
                return False
        elif c == b'"':
            i += 1
            while data[i:i + 1] != b'"':
                if data[i:i + 1] in (b"", b"\r", b"\n") or data[i] >= 0x80:
                    return False
                i += 2 if data[i:i + 1] == b"\\" else 1
        elif c in (b"{", b"~"):
            m = re.compile(rb"~?\{(\d+)\}\r\n").match(data, i)
            if m is None:
                return False
            i = m.end() + int(m.group(1))
            continue
        elif c in (b"\r", b"\n") or data[i] >= 0x80 or data[i] == 0:
            return False
        i += 1
    return depth == 0


# --- the simple items -------------------------------------------------------------------

def test_uid_first_then_items_in_order() -> None:
    raw = b"From: a@b.fr\r\nSubject: x\r\n\r\nhello\r\n"
    out = fetch_one(raw, FetchAtt("FLAGS"), body(text="HEADER.FIELDS", fields=("FROM",), peek=True),
                    FetchAtt("UID"))
    # the field with its CRLF, then the blank line that ends a header: 16 octets
    assert out == b"(UID 5 FLAGS (\\Seen) BODY[HEADER.FIELDS (FROM)] {16}\r\nFrom: a@b.fr\r\n\r\n)"


def test_view_items_need_no_content() -> None:
    atts = [FetchAtt("UID"), FetchAtt("FLAGS"), FetchAtt("INTERNALDATE"), FetchAtt("RFC822.SIZE")]
    assert not needs_content(atts)
    msg = view(PLAIN, flags=frozenset({"$Important", "\\Seen", "\\Answered"}))
    assert render(msg, atts, None) == (b'(UID 5 FLAGS (\\Answered \\Seen $Important) '
                                       b'INTERNALDATE "14-May-2024 09:31:02 +0200" RFC822.SIZE %d)' % len(PLAIN))


@pytest.mark.parametrize("att", [FetchAtt("ENVELOPE"), FetchAtt("BODYSTRUCTURE"), FetchAtt("BODY"),
                                 body(peek=True), FetchAtt("RFC822.HEADER"),
                                 FetchAtt("BINARY.SIZE", Section((1,)))])
def test_content_items_need_content(att: FetchAtt) -> None:
    assert needs_content([FetchAtt("UID"), att])
    with pytest.raises(ValueError):
        render(view(), [att], None)


@pytest.mark.parametrize("att, seen", [
    (body(), True), (body(peek=True), False), (body(1, text="MIME"), True),
    (FetchAtt("RFC822"), True), (FetchAtt("RFC822.TEXT"), True), (FetchAtt("RFC822.HEADER"), False),
    (FetchAtt("BINARY", Section((1,))), True), (FetchAtt("BINARY", Section((1,)), peek=True), False),
    (FetchAtt("BINARY.SIZE", Section((1,))), False), (FetchAtt("BODY"), False),
    (FetchAtt("BODYSTRUCTURE"), False), (FetchAtt("ENVELOPE"), False), (FetchAtt("FLAGS"), False),
])
def test_sets_seen(att: FetchAtt, seen: bool) -> None:
    # RFC 3501 §6.4.5, RFC 3516 §4.2
    assert sets_seen([FetchAtt("UID"), att]) is seen


def test_recent_is_a_rev1_flag_only() -> None:
    msg = view(flags=frozenset({"\\Seen"}), recent=True)
    assert render(msg, [FetchAtt("FLAGS")], None) == b"(FLAGS (\\Recent \\Seen))"
    # RFC 9051 §2.3.2 has no \Recent
    assert render(msg, [FetchAtt("FLAGS")], None, rev2=True) == b"(FLAGS (\\Seen))"


def test_a_stored_flag_that_is_not_an_atom_is_left_out() -> None:
    msg = view(flags=frozenset({"\\Seen", "bad flag", "x)y", "ok"}))
    assert render(msg, [FetchAtt("FLAGS")], None) == b"(FLAGS (\\Seen ok))"


def test_item_asked_twice_is_answered_once_uid_first() -> None:
    out = fetch_one(PLAIN, body(peek=True), FetchAtt("FLAGS"), body(), FetchAtt("UID"), FetchAtt("UID"))
    assert out == b"(UID 5 BODY[] " + lit(PLAIN) + b" FLAGS (\\Seen))"


# --- BODY[section] ------------------------------------------------------------------------

def test_whole_message_byte_for_byte_8bit() -> None:
    assert fetch_one(PLAIN, body()) == b"(BODY[] " + lit(PLAIN) + b")"
    assert fetch_one(PLAIN, FetchAtt("RFC822")) == b"(RFC822 " + lit(PLAIN) + b")"
    assert fetch_one(MIXED, body()) == b"(BODY[] " + lit(MIXED) + b")"


def test_header_and_text() -> None:
    assert fetch_one(PLAIN, body(text="HEADER")) == b"(BODY[HEADER] " + lit(PLAIN_HEADER) + b")"
    assert fetch_one(PLAIN, body(text="TEXT")) == b"(BODY[TEXT] " + lit(PLAIN_BODY) + b")"
    assert fetch_one(MIXED, FetchAtt("RFC822.HEADER")) == b"(RFC822.HEADER " + lit(MIXED_HEADER) + b")"
    assert fetch_one(MIXED, FetchAtt("RFC822.TEXT")) == b"(RFC822.TEXT " + lit(MIXED_BODY) + b")"


def test_part_one_of_a_plain_message_is_its_body() -> None:
    # RFC 3501 §6.4.5: a non-multipart message has only a part 1, its body
    assert fetch_one(PLAIN, body(1)) == b"(BODY[1] " + lit(PLAIN_BODY) + b")"
    assert fetch_one(PLAIN, body(1, text="MIME")) == b"(BODY[1.MIME] " + lit(PLAIN_HEADER) + b")"


def test_nested_parts_byte_for_byte() -> None:
    assert fetch_one(ALTERNATIVE, body(1, 1)) == b"(BODY[1.1] " + lit(ALT_PLAIN) + b")"
    assert fetch_one(ALTERNATIVE, body(1, 2)) == b"(BODY[1.2] " + lit(ALT_HTML) + b")"
    assert fetch_one(ALTERNATIVE, body(2)) == b"(BODY[2] " + lit(ALT_IMAGE) + b")"
    assert fetch_one(MIXED, body(1)) == b"(BODY[1] " + lit(MIXED_TEXT) + b")"
    assert fetch_one(MIXED, body(2)) == b"(BODY[2] " + lit(MIXED_PDF_BODY) + b")"
    mime_header = crlf('Content-Type: text/plain; charset="utf-8"\n'
                       "Content-Transfer-Encoding: quoted-printable\n\n")
    assert fetch_one(MIXED, body(1, text="MIME")) == b"(BODY[1.MIME] " + lit(mime_header) + b")"


def test_sections_of_a_message_rfc822_part() -> None:
    assert fetch_one(FORWARDED, body(1)) == b"(BODY[1] " + lit(FWD_TEXT) + b")"
    assert fetch_one(FORWARDED, body(2)) == b"(BODY[2] " + lit(INNER) + b")"
    assert fetch_one(FORWARDED, body(2, text="MIME")) == b"(BODY[2.MIME] " + lit(FWD_MSG_HEADER) + b")"
    assert fetch_one(FORWARDED, body(2, text="HEADER")) == b"(BODY[2.HEADER] " + lit(INNER_HEADER) + b")"
    assert fetch_one(FORWARDED, body(2, text="TEXT")) == b"(BODY[2.TEXT] " + lit(INNER_BODY) + b")"
    assert fetch_one(FORWARDED, body(2, 1)) == b"(BODY[2.1] " + lit(INNER_TEXT) + b")"
    assert fetch_one(FORWARDED, body(2, 1, text="MIME")) == b"(BODY[2.1.MIME] " + lit(INNER_TEXT_HEADER) + b")"
    assert fetch_one(FORWARDED, body(2, 2)) == b"(BODY[2.2] " + lit(INNER_BIN) + b")"
    subject = b"Subject: Convocation\r\n\r\n"
    assert fetch_one(FORWARDED, body(2, text="HEADER.FIELDS", fields=("SUBJECT",))) == (
        b"(BODY[2.HEADER.FIELDS (SUBJECT)] " + lit(subject) + b")")


def test_header_and_text_of_a_part_that_is_not_a_message_are_empty() -> None:
    assert fetch_one(MIXED, body(1, text="HEADER")) == b"(BODY[1.HEADER] {0}\r\n)"
    assert fetch_one(MIXED, body(1, text="TEXT")) == b"(BODY[1.TEXT] {0}\r\n)"


def test_missing_part_is_nil() -> None:
    assert fetch_one(MIXED, body(3)) == b"(BODY[3] NIL)"
    assert fetch_one(MIXED, body(1, 1)) == b"(BODY[1.1] NIL)"
    assert fetch_one(MIXED, body(9, partial=(0, 10))) == b"(BODY[9]<0> NIL)"


def test_header_fields_case_insensitive_in_message_order_with_blank_line() -> None:
    raw = crlf("From: a@b.fr\nSUBJECT: un\n sujet plié\nTo: c@d.fr\nsubject: deux\nX-Autre: x\n\nbody\n")
    out = fetch_one(raw, body(text="HEADER.FIELDS", fields=("TO", "SUBJECT")))
    wanted = crlf("SUBJECT: un\n sujet plié\nTo: c@d.fr\nsubject: deux\n\n")
    assert out == b"(BODY[HEADER.FIELDS (TO SUBJECT)] " + lit(wanted) + b")"
    out = fetch_one(raw, body(text="HEADER.FIELDS.NOT", fields=("TO", "SUBJECT")))
    assert out == b"(BODY[HEADER.FIELDS.NOT (TO SUBJECT)] " + lit(b"From: a@b.fr\r\nX-Autre: x\r\n\r\n") + b")"
    out = fetch_one(raw, body(text="HEADER.FIELDS", fields=("CC",)))
    assert out == b"(BODY[HEADER.FIELDS (CC)] {2}\r\n\r\n)"


def test_header_fields_of_a_header_without_blank_line() -> None:
    raw = b"Subject: no body"
    out = fetch_one(raw, body(text="HEADER.FIELDS", fields=("SUBJECT",)))
    assert out == b"(BODY[HEADER.FIELDS (SUBJECT)] " + lit(b"Subject: no body\r\n\r\n") + b")"


def test_partial_fetch() -> None:
    assert fetch_one(PLAIN, body(partial=(0, 10))) == b"(BODY[]<0> " + lit(PLAIN[:10]) + b")"
    assert fetch_one(PLAIN, body(text="TEXT", partial=(8, 6))) == b"(BODY[TEXT]<8> {6}\r\nMadame)"
    assert fetch_one(ALTERNATIVE, body(1, 2, partial=(3, 1000))) == b"(BODY[1.2]<3> " + lit(ALT_HTML[3:]) + b")"
    # RFC 3501 §6.4.5: an origin past the end is an empty string
    assert fetch_one(PLAIN, body(partial=(100_000, 10))) == b"(BODY[]<100000> {0}\r\n)"


def test_nul_in_a_stored_message_never_reaches_a_literal() -> None:
    raw = b"Subject: x\r\n\r\na\x00b\r\n"
    assert fetch_one(raw, body(text="TEXT")) == b"(BODY[TEXT] {5}\r\na\x80b\r\n)"


# --- BINARY (RFC 3516) ----------------------------------------------------------------------

def test_binary_of_the_pdf_is_the_original_bytes() -> None:
    # the PDF holds a NUL: literal8 (RFC 3516 §3)
    out = fetch_one(MIXED, FetchAtt("BINARY", Section((2,)), peek=True))
    assert out == b"(BINARY[2] ~" + lit(PDF) + b")"
    assert fetch_one(MIXED, FetchAtt("BINARY.SIZE", Section((2,)))) == b"(BINARY.SIZE[2] %d)" % len(PDF)
    out = fetch_one(MIXED, FetchAtt("BINARY", Section((2,)), partial=(0, 8)))
    assert out == b"(BINARY[2]<0> {8}\r\n%PDF-1.4)"


def test_binary_of_quoted_printable_text() -> None:
    out = fetch_one(MIXED, FetchAtt("BINARY", Section((1,))))
    text = ("Veuillez trouver ci-joint le compte rendu de votre consultation du 15 mai 2024. "
            "Vos résultats d'imagerie sont normaux.\r\nBien cordialement,\r\nDr Leroy").encode()
    assert out == b"(BINARY[1] " + lit(text) + b")"


def test_binary_of_the_whole_message_and_of_an_enclosed_part() -> None:
    assert fetch_one(PLAIN, FetchAtt("BINARY", Section())) == b"(BINARY[] " + lit(PLAIN) + b")"
    assert fetch_one(PLAIN, FetchAtt("BINARY.SIZE", Section())) == b"(BINARY.SIZE[] %d)" % len(PLAIN)
    assert fetch_one(FORWARDED, FetchAtt("BINARY", Section((2, 2)))) == b"(BINARY[2.2] ~{5}\r\n\x00\x01\x02\x03\x04)"
    assert fetch_one(FORWARDED, FetchAtt("BINARY", Section((7,)))) == b"(BINARY[7] NIL)"


def test_binary_of_an_unknown_encoding_raises_unknown_cte() -> None:
    raw = crlf('Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Transfer-Encoding: x-uuencode\n\n'
               "begin 644 cr.pdf\n--b--\n")
    with pytest.raises(UnknownCte) as err:
        fetch_one(raw, FetchAtt("BINARY", Section((1,))))
    assert err.value.encoding == "x-uuencode"
    assert fetch.UnknownCte is UnknownCte
    # BODY[] of the same part is still served
    assert fetch_one(raw, body(1)) == b"(BODY[1] " + lit(b"begin 644 cr.pdf") + b")"


def test_binary_of_the_cda_is_the_document() -> None:
    message, cda, _ = cda_message()
    out = fetch_one(message, FetchAtt("BINARY", Section((2,)), peek=True),
                    FetchAtt("BINARY.SIZE", Section((2,))))
    assert out == b"(BINARY[2] " + lit(cda) + b" BINARY.SIZE[2] %d)" % len(cda)


# --- ENVELOPE (RFC 3501 §7.4.2) ----------------------------------------------------------

def test_envelope_with_group_and_defaults() -> None:
    out = fetch_one(GROUP, FetchAtt("ENVELOPE"))
    frm = b'(("=?utf-8?q?Centre_de_sant=C3=A9?=" NIL "contact" "cds-exemple.mssante.fr"))'
    subject = "Fermeture exceptionnelle du centre de santé".encode()
    assert out == (
        b'(ENVELOPE ("Thu, 16 May 2024 11:00:00 +0200" ' + lit(subject) + b" "
        + frm + b" " + frm + b" " + frm + b" "  # RFC 3501 §7.4.2: Sender and Reply-To default to From
        + b'((NIL NIL "Patients du Dr Leroy" NIL)(NIL NIL "jeanne.martin" "patient.mssante.fr")'
          b'("Paul Durand" NIL "paul.durand" "patient.mssante.fr")(NIL NIL NIL NIL)) '
        + b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL '
        + b'"<question-9@patient.mssante.fr>" "<fermeture@cds-exemple.mssante.fr>"))')
    assert well_framed(out)


def test_envelope_keeps_encoded_words_and_fills_nil() -> None:
    out = fetch_one(PLAIN, FetchAtt("ENVELOPE"))
    assert out == (
        b'(ENVELOPE ("Tue, 14 May 2024 09:30:00 +0200" "=?utf-8?q?R=C3=A9sultats?= de votre bilan" '
        + b'(("=?utf-8?q?Laboratoire_Sant=C3=A9?=" NIL "labo" "biologie.mssante.fr")) ' * 3
        + b'(("Jeanne Martin" NIL "jeanne.martin" "patient.mssante.fr")) NIL NIL NIL '
          b'"<20240514093000.4F2A@biologie.mssante.fr>"))')


def test_envelope_explicit_sender_and_empty_reply_to() -> None:
    raw = crlf("From: a@b.fr\nSender: secretariat@b.fr\nReply-To:\nSubject:\n  Multi\n ligne\n\nx")
    out = fetch_one(raw, FetchAtt("ENVELOPE"))
    assert out == (b'(ENVELOPE (NIL "Multi ligne" ((NIL NIL "a" "b.fr")) ((NIL NIL "secretariat" "b.fr")) '
                   b'((NIL NIL "a" "b.fr")) NIL NIL NIL NIL NIL))')


def test_envelope_of_a_message_without_header() -> None:
    assert fetch_one(b"\r\nbody", FetchAtt("ENVELOPE")) == b"(ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))"


# --- BODYSTRUCTURE and BODY --------------------------------------------------------------

def n(data: bytes) -> bytes:
    return b"%d" % len(data)


def lines(data: bytes) -> bytes:
    return b"%d" % data.count(b"\n")


def test_bodystructure_of_a_plain_message() -> None:
    out = fetch_one(PLAIN, FetchAtt("BODYSTRUCTURE"), FetchAtt("BODY"))
    assert out == (b'(BODYSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL "8bit" ' + n(PLAIN_BODY)
                   + b" 7 NIL NIL NIL NIL) "
                   + b'BODY ("text" "plain" ("charset" "utf-8") NIL NIL "8bit" ' + n(PLAIN_BODY) + b" 7))")


def test_bodystructure_of_text_and_pdf_attachment() -> None:
    expected = (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" ' + n(MIXED_TEXT) + b" 3 NIL NIL NIL NIL)"
        b'("application" "pdf" ("name" "CR.pdf") NIL NIL "base64" ' + n(MIXED_PDF_BODY)
        + b' NIL ("attachment" ("filename" "CR.pdf")) NIL NIL)'
        b' "mixed" ("boundary" "=_frontiere_42") NIL NIL NIL)')
    assert fetch_one(MIXED, FetchAtt("BODYSTRUCTURE")) == b"(BODYSTRUCTURE " + expected + b")"


def test_bodystructure_of_alternative_inside_mixed() -> None:
    plain = b'"text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" ' + n(ALT_PLAIN) + b" 1"
    html = b'"text" "html" ("charset" "utf-8") NIL NIL "8bit" ' + n(ALT_HTML) + b" 1"
    image = b'"image" "png" NIL "<logo@chu-exemple.fr>" "Logo du CHU" "base64" ' + n(ALT_IMAGE)
    expected = (
        b"(((" + plain + b' NIL NIL ("fr") NIL)(' + html + b' NIL NIL NIL "https://chu-exemple.fr/rdv/20-mai.html")'
        b' "alternative" ("boundary" "alt-7") NIL NIL NIL)'
        b"(" + image + b' "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" NIL) NIL NIL)'
        b' "mixed" ("boundary" "mix-7") NIL NIL NIL)')
    assert fetch_one(ALTERNATIVE, FetchAtt("BODYSTRUCTURE")) == b"(BODYSTRUCTURE " + expected + b")"
    # BODY: the same without extension data (RFC 3501 §7.4.2 "BODY")
    short = b"(((" + plain + b")(" + html + b') "alternative")(' + image + b') "mixed")'
    assert fetch_one(ALTERNATIVE, FetchAtt("BODY")) == b"(BODY " + short + b")"


def test_bodystructure_of_a_forwarded_message() -> None:
    envelope = (b'("Mon, 13 May 2024 08:00:00 +0200" "Convocation" '
                + b'(("Secretariat" NIL "secretariat" "chu-exemple.mssante.fr")) ' * 3
                + b'(("Dr. Anne Leroy" NIL "anne.leroy" "chu-exemple.mssante.fr")) NIL NIL NIL '
                  b'"<conv-1@chu-exemple.mssante.fr>")')
    inner = (b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" ' + n(INNER_TEXT) + b" 1 NIL NIL NIL NIL)"
             b'("application" "octet-stream" NIL NIL NIL "base64" 8 NIL NIL NIL NIL)'
             b' "mixed" ("boundary" "inner") NIL NIL NIL)')
    expected = (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "8bit" ' + n(FWD_TEXT) + b" 1 NIL NIL NIL NIL)"
        b'("message" "rfc822" NIL NIL "Message transfere" "7bit" ' + n(INNER) + b" " + envelope + b" "
        + inner + b" " + lines(INNER) + b" NIL NIL NIL NIL)"
        b' "mixed" ("boundary" "outer") NIL NIL NIL)')
    out = fetch_one(FORWARDED, FetchAtt("BODYSTRUCTURE"))
    assert out == b"(BODYSTRUCTURE " + expected + b")"


def test_bodystructure_of_the_cda_message() -> None:
    message, _, encoded = cda_message()
    text = "Veuillez trouver votre lettre de liaison en pièce jointe.".encode()
    expected = (
        b'(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" ' + n(text) + b" 0 NIL NIL NIL NIL)"
        b'("text" "xml" ("charset" "utf-8" "name" "LDL-SES.xml") NIL NIL "base64" ' + n(encoded)
        + b" " + lines(encoded) + b' NIL ("attachment" ("filename" "LDL-SES.xml")) NIL NIL)'
        b' "mixed" ("boundary" "cda-1") NIL NIL NIL)')
    assert fetch_one(message, FetchAtt("BODYSTRUCTURE")) == b"(BODYSTRUCTURE " + expected + b")"


@pytest.mark.parametrize("raw, structure", [
    # no Content-Type: text/plain us-ascii 7bit (RFC 2045 §5.2)
    (b"Subject: x\r\n\r\nhello\r\n", b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL)'),
    # a multipart whose boundary never appears: one empty text/plain, as Dovecot writes it
    (b'Content-Type: multipart/mixed; boundary="x"\r\n\r\nnothing\r\n',
     b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
     b' "mixed" ("boundary" "x") NIL NIL NIL)'),
    # a multipart without boundary degrades to text/plain
    (b"Content-Type: multipart/mixed\r\n\r\n--x\r\n",
     b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 1 NIL NIL NIL NIL)'),
    # a broken Content-Type is text/plain
    (b"MIME-Version: 1.0\r\nContent-Type: garbage\r\n\r\nx",
     b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 1 0 NIL NIL NIL NIL)'),
    # several languages, a parameter value that needs quoting
    (b'Content-Type: Text/Plain; Format="a \\"b\\""\r\nContent-Language: fr, en (comment)\r\n\r\n',
     b'("Text" "Plain" ("Format" "a \\"b\\"" "charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL ("fr" "en") NIL)'),
])
def test_bodystructure_of_odd_messages(raw: bytes, structure: bytes) -> None:
    assert fetch_one(raw, FetchAtt("BODYSTRUCTURE")) == b"(BODYSTRUCTURE " + structure + b")"


def test_8bit_parameter_goes_as_literal() -> None:
    raw = 'Content-Type: application/pdf; name="Résultats.pdf"\r\nMIME-Version: 1.0\r\n\r\nx'.encode()
    out = fetch_one(raw, FetchAtt("BODYSTRUCTURE"))
    assert out == (b'(BODYSTRUCTURE ("application" "pdf" ("name" ' + lit("Résultats.pdf".encode())
                   + b') NIL NIL "7bit" 1 NIL NIL NIL NIL))')
    assert well_framed(out)


def test_rev2_renders_the_same_bytes() -> None:
    atts = [FetchAtt("UID"), FetchAtt("ENVELOPE"), FetchAtt("BODYSTRUCTURE"), body(2, 1),
            FetchAtt("RFC822.SIZE")]
    assert fetch_one(FORWARDED, *atts, rev2=True) == fetch_one(FORWARDED, *atts)


# --- framing never breaks, whatever the sender wrote -----------------------------------

_ALL_ITEMS = [FetchAtt("UID"), FetchAtt("FLAGS"), FetchAtt("INTERNALDATE"), FetchAtt("RFC822.SIZE"),
              FetchAtt("ENVELOPE"), FetchAtt("BODYSTRUCTURE"), FetchAtt("BODY"), body(), body(1, 1),
              body(text="HEADER.FIELDS", fields=("SUBJECT", "FROM")), body(2, text="HEADER"),
              body(1, text="MIME", partial=(2, 30)), FetchAtt("BINARY.SIZE", Section((1,)))]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.sampled_from([
    b"From: \"a\\\" (\r\n <x@y>\r\n", b"Subject: \xc3\xa9\x00\"{5}\r\n", b"To: g: a@b, \"c\r\n d\" <e@f>;\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain; name=\"\xff\" ; x=\"\\\r\n", b"Content-ID: <\")>\r\n",
    b"Content-Disposition: inline; filename=\"{3}\r\n", b"Content-Language: \x01, \r\n", b"\r\n",
    b"--b\r\n", b"--b--\r\n", b"Date: \x7f\r\n", b"Message-ID: " + b"x" * 2000 + b"\r\n",
]), max_size=25))
def test_any_message_renders_well_framed(lines_: list[bytes]) -> None:
    raw = b"".join(lines_)
    assert well_framed(fetch_one(raw, *_ALL_ITEMS))
