"""relay/imap/search.py: every SEARCH key (RFC 3501 §6.4.4, RFC 9051 §6.4.4).

String matching choice: RFC 9051 only requires ASCII case-insensitivity. We fold both
sides (Unicode compatibility decomposition, case folding, accents dropped), like
Dovecot's i;unicode-casemap search: "résultats", "RÉSULTATS" and "resultats" all find
"Résultats". Patients often type without accents on a phone.
"""
from __future__ import annotations

import datetime as dt

import pytest

from relay.imap import search
from relay.imap.search import matches, needs_content
from relay.imap.types import MessageView, SearchKey, SeqRange, SequenceSet

from .test_mime import ALTERNATIVE, FORWARDED, GROUP, MIXED, PLAIN, cda_message, crlf

PARIS = dt.timezone(dt.timedelta(hours=2))
# 00:30 in Paris on 15 May is still 14 May in UTC: date keys use the stored timezone
INTERNAL = dt.datetime(2024, 5, 15, 0, 30, tzinfo=PARIS)


def view(raw: bytes = PLAIN, seq: int = 3, uid: int = 40, flags: frozenset[str] = frozenset(),
         recent: bool = False) -> MessageView:
    return MessageView(seq=seq, uid=uid, flags=flags, internal_date=INTERNAL, size=len(raw), recent=recent)


def k(op: str, *args: object) -> SearchKey:
    return SearchKey(op, tuple(args))


def hit(key: SearchKey, raw: bytes | None = PLAIN, largest_seq: int = 10, largest_uid: int = 100,
        **kw: object) -> bool:
    msg = view(raw if raw is not None else PLAIN, **kw)  # type: ignore[arg-type]
    return matches(key, msg, raw, largest_seq, largest_uid)


def seqset(*ranges: tuple[int | None, int | None]) -> SequenceSet:
    return SequenceSet(tuple(SeqRange(a, b) for a, b in ranges))


# --- keys answered from the view --------------------------------------------------------

@pytest.mark.parametrize("op, flag", [("ANSWERED", "\\Answered"), ("DELETED", "\\Deleted"),
                                      ("DRAFT", "\\Draft"), ("FLAGGED", "\\Flagged"), ("SEEN", "\\Seen")])
def test_system_flags(op: str, flag: str) -> None:
    assert hit(k(op), None, flags=frozenset({flag}))
    assert not hit(k(op), None, flags=frozenset({"$Other"}))
    assert hit(k("UN" + op), None, flags=frozenset())
    assert not hit(k("UN" + op), None, flags=frozenset({flag.upper()}))  # flags ignore case


def test_keywords() -> None:
    flags = frozenset({"$Important", "Resultats"})
    assert hit(k("KEYWORD", "$important"), None, flags=flags)
    assert not hit(k("KEYWORD", "$Junk"), None, flags=flags)
    assert hit(k("UNKEYWORD", "$Junk"), None, flags=flags)
    assert not hit(k("UNKEYWORD", "resultats"), None, flags=flags)


def test_recent_new_old() -> None:
    assert hit(k("RECENT"), None, recent=True) and not hit(k("RECENT"), None)
    # RFC 3501 §6.4.4: NEW is RECENT UNSEEN, OLD is NOT RECENT
    assert hit(k("NEW"), None, recent=True)
    assert not hit(k("NEW"), None, recent=True, flags=frozenset({"\\Seen"}))
    assert not hit(k("NEW"), None)
    assert hit(k("OLD"), None) and hit(k("OLD"), None, flags=frozenset({"\\Seen"}))
    assert not hit(k("OLD"), None, recent=True)


def test_all() -> None:
    assert hit(k("ALL"), None)


def test_size() -> None:
    size = len(PLAIN)
    assert hit(k("LARGER", size - 1), None) and not hit(k("LARGER", size), None)
    assert hit(k("SMALLER", size + 1), None) and not hit(k("SMALLER", size), None)


def test_uid_and_sequence_sets() -> None:
    assert hit(k("UID", seqset((40, 40))), None)
    assert hit(k("UID", seqset((1, 5), (50, 30))), None)  # 50:30 is 30:50
    assert hit(k("UID", seqset((41, None))), None, largest_uid=40)  # 41:* is 40:41 here
    assert hit(k("UID", seqset((None, None))), None, largest_uid=40)  # * is the largest UID
    assert not hit(k("UID", seqset((None, None))), None, largest_uid=41)
    assert hit(k("SEQ", seqset((2, 4))), None) and not hit(k("SEQ", seqset((4, None))), None)
    assert hit(k("SEQ", seqset((None, 3))), None, largest_seq=10)  # *:3 is 3:10


@pytest.mark.parametrize("op, day, expected", [
    ("BEFORE", dt.date(2024, 5, 15), False), ("BEFORE", dt.date(2024, 5, 16), True),
    ("ON", dt.date(2024, 5, 15), True), ("ON", dt.date(2024, 5, 14), False),
    ("SINCE", dt.date(2024, 5, 15), True), ("SINCE", dt.date(2024, 5, 16), False),
])
def test_internal_date_keys_use_its_own_timezone(op: str, day: dt.date, expected: bool) -> None:
    assert hit(k(op, day), None) is expected


def test_view_keys_need_no_content() -> None:
    key = k("AND", k("SEEN"), k("OR", k("UID", seqset((1, None))), k("NOT", k("LARGER", 10))),
            k("ON", dt.date(2024, 1, 1)))
    assert not needs_content(key)
    assert needs_content(k("AND", k("SEEN"), k("NOT", k("BODY", "x"))))
    with pytest.raises(ValueError):
        matches(k("SUBJECT", "x"), view(), None, 1, 1)


# --- keys that read the message -----------------------------------------------------------

@pytest.mark.parametrize("needle", ["résultats", "RÉSULTATS", "Resultats", "sultats de votre"])
def test_subject_is_decoded_and_folded(needle: str) -> None:
    assert hit(k("SUBJECT", needle))


def test_subject_miss_and_encoded_form_not_matched() -> None:
    assert not hit(k("SUBJECT", "ordonnance"))
    assert not hit(k("SUBJECT", "=C3=A9"))


def test_address_keys_match_decoded_names_and_addresses() -> None:
    assert hit(k("FROM", "laboratoire santé"))
    assert hit(k("FROM", "LABO@BIOLOGIE.MSSANTE.FR"))
    assert hit(k("TO", "jeanne.martin@patient"))
    assert hit(k("TO", "Jeanne Martin"))
    assert not hit(k("CC", "jeanne"))  # no Cc field
    assert not hit(k("BCC", ""))  # no Bcc field: even the empty string misses
    assert hit(k("CC", "undisclosed"), GROUP)
    assert hit(k("TO", "paul durand"), GROUP)  # across folded lines
    raw = crlf("Bcc: secret@chu.fr\nSubject: x\n\nx")
    assert hit(k("BCC", "SECRET"), raw)


def test_header_key() -> None:
    assert hit(k("HEADER", "Message-ID", "4f2a@biologie"))
    assert hit(k("HEADER", "return-path", ""))  # RFC 3501 §6.4.4: empty value = field present
    assert not hit(k("HEADER", "X-Priority", ""))
    assert hit(k("HEADER", "Subject", "RÉSULTATS DE"))
    assert hit(k("HEADER", "In-Reply-To", "question-9"), GROUP)
    # MIME part headers are not the message header
    assert not hit(k("HEADER", "Content-Disposition", ""), MIXED)


@pytest.mark.parametrize("needle", ["hémoglobine", "HÉMOGLOBINE", "hemoglobine", "taux d'hémoglobine est"])
def test_body_of_8bit_text(needle: str) -> None:
    assert hit(k("BODY", needle))


def test_body_reads_decoded_text_parts_only() -> None:
    assert hit(k("BODY", "vos résultats d'imagerie"), MIXED)  # quoted-printable, soft break undone
    assert hit(k("BODY", "mai 2024"), MIXED)
    assert not hit(k("BODY", "%PDF"), MIXED)  # an application/pdf part is not text
    assert not hit(k("BODY", "Compte rendu de consultation"), MIXED)  # the subject is not body
    assert hit(k("BODY", "confirmé pour le"), ALTERNATIVE)
    assert hit(k("BODY", "<b>20 mai</b>"), ALTERNATIVE)  # text/html as stored text
    assert hit(k("BODY", "rendez-vous le 20 mai"), FORWARDED)  # inside the enclosed message


def test_text_reads_headers_and_body() -> None:
    assert hit(k("TEXT", "Compte rendu de consultation"), MIXED)
    assert hit(k("TEXT", "filename=\"CR.pdf\""), MIXED)  # MIME header fields count (RFC 3501 §6.4.4)
    assert hit(k("TEXT", "d'imagerie"), MIXED)
    assert hit(k("TEXT", "Convocation"), FORWARDED)
    assert not hit(k("TEXT", "introuvable"), MIXED)


def test_body_of_the_cda_document() -> None:
    message, _, _ = cda_message()
    assert hit(k("BODY", "lettre de liaison a la sortie"), message)  # base64 text/xml, accents folded
    assert hit(k("BODY", "stimulateur cardiaque"), message)
    assert not hit(k("SUBJECT", "stimulateur"), message)


def test_charsets_and_encodings_are_decoded_tolerantly() -> None:
    latin1 = b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\nR\xe9sultats normaux\r\n"
    assert hit(k("BODY", "résultats"), latin1)
    undeclared = b"Subject: x\r\n\r\nR\xe9sultats\r\n"  # 8-bit Latin-1 without any charset
    assert hit(k("BODY", "résultats"), undeclared)
    b64 = crlf("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
               "Content-Transfer-Encoding: base64\n\nUsOpc3VsdGF0cyBub3JtYXV4\n")
    assert hit(k("BODY", "RESULTATS NORMAUX"), b64)
    odd = crlf("MIME-Version: 1.0\nContent-Type: text/plain; charset=x-nowhere\n"
               "Content-Transfer-Encoding: x-uue\n\nabc\n")
    assert hit(k("BODY", "abc"), odd)


@pytest.mark.parametrize("op, day, expected", [
    ("SENTBEFORE", dt.date(2024, 5, 14), False), ("SENTBEFORE", dt.date(2024, 5, 15), True),
    ("SENTON", dt.date(2024, 5, 14), True), ("SENTON", dt.date(2024, 5, 15), False),
    ("SENTSINCE", dt.date(2024, 5, 14), True), ("SENTSINCE", dt.date(2024, 5, 15), False),
])
def test_sent_date_keys(op: str, day: dt.date, expected: bool) -> None:
    assert hit(k(op, day)) is expected  # Date: Tue, 14 May 2024 09:30:00 +0200


def test_sent_date_is_the_date_fields_own_day() -> None:
    raw = b"Date: Tue, 14 May 2024 23:30:00 -0500\r\n\r\nx"  # already 15 May in UTC
    assert hit(k("SENTON", dt.date(2024, 5, 14)), raw)


@pytest.mark.parametrize("raw", [b"Date: demain matin\r\n\r\nx", b"Date: 31 Feb 2024 10:00 +0000\r\n\r\nx",
                                 b"Subject: no date\r\n\r\nx"])
def test_unparseable_or_missing_date_matches_no_sent_key(raw: bytes) -> None:
    for op in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        assert not hit(k(op, dt.date(2024, 5, 14)), raw)
        assert hit(k("NOT", k(op, dt.date(2024, 5, 14))), raw)


# --- NOT / OR / AND ---------------------------------------------------------------------

def test_nesting() -> None:
    seen = frozenset({"\\Seen"})
    key = k("AND",
            k("OR", k("SUBJECT", "ordonnance"), k("FROM", "laboratoire")),
            k("NOT", k("FLAGGED")),
            k("OR", k("NOT", k("SEEN")), k("AND", k("BODY", "hémoglobine"), k("LARGER", 100))))
    assert hit(key, flags=seen)
    assert not hit(key, flags=seen | {"\\Flagged"})
    assert not hit(k("NOT", key), flags=seen)
    assert not hit(k("AND", key, k("TO", "paul")), flags=seen)
    assert hit(k("OR", k("AND", key, k("TO", "paul")), k("NOT", k("NOT", k("ALL")))), flags=seen)
    assert hit(k("AND"))  # an empty list is true


def test_the_message_is_parsed_once_per_search(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = search.parse
    monkeypatch.setattr(search, "parse", lambda raw: calls.append(1) or real(raw))
    key = k("AND", k("SUBJECT", "résultats"), k("BODY", "normal"), k("TEXT", "bilan"),
            k("OR", k("FROM", "x"), k("HEADER", "To", "martin")), k("SENTON", dt.date(2024, 5, 14)))
    assert hit(key)
    assert len(calls) == 1
    # a view key that fails first spares the parse
    calls.clear()
    assert not hit(k("AND", k("BODY", "normal"), k("SEEN")))
    assert calls == []


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ValueError):
        hit(k("SAVEDBEFORE", 5), None)


def test_modseq_key_compares_the_views_modseq() -> None:
    # RFC 7162 §3.1.5: MODSEQ n matches messages whose modseq is n or more
    msg = MessageView(seq=1, uid=1, flags=frozenset(), internal_date=INTERNAL, size=10, modseq=7)
    assert matches(k("MODSEQ", 7), msg, None, 1, 1) and matches(k("MODSEQ", 1), msg, None, 1, 1)
    assert not matches(k("MODSEQ", 8), msg, None, 1, 1)


def test_malformed_message_never_raises() -> None:
    raw = (b'Content-Type: multipart/mixed; boundary="b"\r\nSubject: =?utf-8?b?!!?= =?bogus?q?=ZZ?=\r\n'
           b"Date: \xff\r\n\r\n--b\r\nContent-Type: text/plain; charset=\"utf-16\r\n"
           b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n\x00\xff\r\n--b")
    key = k("OR", k("TEXT", "zz"), k("OR", k("SENTON", dt.date(2024, 1, 1)), k("SUBJECT", "x")))
    assert hit(key, raw) in (True, False)


# --- cost (issue 10): one command's set is compiled once, not walked per message ----------

class _CountingRanges(tuple):  # type: ignore[type-arg]
    """A sequence set's ranges that count how often they are walked."""

    walks = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        type(self).walks += 1
        return super().__iter__()


@pytest.mark.parametrize("op", ["SEQ", "UID"])
def test_huge_sequence_set_is_walked_once_per_search(op: str) -> None:
    """10,000 messages against "1,3,5,...,19999": walking the 10,000 ranges for each
    message is 10^8 steps (10 s on the event loop); the compiled search walks them once
    and answers each message by bisection."""
    n = 10_000
    _CountingRanges.walks = 0
    ranges = _CountingRanges(SeqRange(i, i) for i in range(1, 2 * n, 2))
    key = k("AND", k(op, SequenceSet(ranges)), k("UNDELETED"))
    compiled = search.Search(key, largest_seq=n, largest_uid=n)
    found = [i for i in range(1, n + 1) if compiled.matches(view(seq=i, uid=i), None)]
    assert found == list(range(1, n + 1, 2))
    assert _CountingRanges.walks <= 2  # once to build the ranges, not once per message
    assert not compiled.needs_content


def test_compiled_search_answers_like_matches() -> None:
    key = k("OR", k("SEQ", seqset((2, 4))), k("AND", k("UID", seqset((None, None))), k("SUBJECT", "compte")))
    compiled = search.Search(key, 10, 100)
    assert compiled.needs_content
    for seq, uid in ((1, 10), (3, 30), (5, 100)):
        msg = view(PLAIN, seq=seq, uid=uid)
        assert compiled.matches(msg, PLAIN) == matches(key, msg, PLAIN, 10, 100)
