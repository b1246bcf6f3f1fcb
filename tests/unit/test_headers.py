"""policy/headers.py: the header section alone, and fields removed from it."""
from __future__ import annotations

import pytest

from policy.headers import HeaderLimits, HeaderScanner, header_block, parse_headers, without_fields

RAW = (b"From: a@b.fr\r\nBcc: x@y.fr,\r\n z@y.fr\r\nSubject: Bcc: in the subject\r\n"
       b"bcc: second@y.fr\r\n\r\nBcc: a body line stays\r\n")


def test_header_block_and_parse_stop_at_the_empty_line() -> None:
    assert header_block(RAW).endswith(b"bcc: second@y.fr\r\n")
    assert parse_headers(RAW)["Subject"] == "Bcc: in the subject"
    assert header_block(b"no body at all") == b"no body at all"


def test_without_fields_drops_every_occurrence_and_its_folded_lines() -> None:
    out = without_fields(RAW, {"bcc"})
    assert out == (b"From: a@b.fr\r\nSubject: Bcc: in the subject\r\n\r\nBcc: a body line stays\r\n")
    assert without_fields(RAW, set()) == RAW


# --- HeaderScanner: the header section's limits, checked as the message arrives ----------
SMALL = HeaderLimits(max_field_bytes=100, max_fields=5, max_section_bytes=400)


def _scan(data: bytes, limits: HeaderLimits = SMALL, step: int = 0) -> HeaderScanner:
    s = HeaderScanner(limits)
    pieces = [data] if step == 0 else [data[i:i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        s.feed(piece)
    return s


@pytest.mark.parametrize("step", [0, 1, 2, 3, 7, 64])
def test_scanner_counts_fields_until_the_empty_line_whatever_the_chunks(step: int) -> None:
    data = b"From: a@b.fr\r\nSubject: x\r\n folded\r\n\tagain\r\nTo: c@d.fr\r\n\r\nBody: not a field\r\n"
    s = _scan(data + b"X: y\r\n" * 50, step=step)
    assert s.done and s.refusal is None and s.fields == 3
    assert s.section_bytes == data.index(b"Body")


@pytest.mark.parametrize("step", [0, 1, 5])
def test_too_many_fields_is_554_560(step: int) -> None:
    s = _scan(b"".join(b"X-%d: y\r\n" % i for i in range(6)) + b"\r\nbody\r\n", step=step)
    assert s.refusal is not None and (s.refusal.code, s.refusal.status) == (554, "5.6.0")
    assert "5 au plus" in s.refusal.fr and "5 at most" in s.refusal.en
    assert _scan(b"".join(b"X-%d: y\r\n" % i for i in range(5)) + b"\r\n", step=step).refusal is None


@pytest.mark.parametrize("step", [0, 1, 13])
def test_a_field_over_the_limit_counts_its_folded_lines(step: int) -> None:
    folded = b"Subject: " + b"a" * 40 + b"\r\n " + b"b" * 40 + b"\r\n " + b"c" * 40 + b"\r\n\r\n"
    s = _scan(folded, step=step)
    assert s.refusal is not None and (s.refusal.code, s.refusal.status, s.refusal.rule) == \
        (552, "5.3.4", "header_field_too_big")
    assert _scan(b"Subject: " + b"a" * 80 + b"\r\n\r\n", step=step).refusal is None


def test_the_whole_section_is_bounded() -> None:
    limits = HeaderLimits(max_field_bytes=100, max_fields=1000, max_section_bytes=400)
    s = _scan(b"".join(b"X: " + b"y" * 90 + b"\r\n" for _ in range(5)), limits)
    assert s.refusal is not None and s.refusal.rule == "header_too_big" and s.refusal.code == 552


def test_a_line_that_is_no_field_ends_the_section_as_the_parser_reads_it() -> None:
    # no empty line: the stdlib parser takes the first non-field line for the body
    s = _scan(b"Subject: x\r\nthis is body text\r\n" + b"more body\r\n" * 100)
    assert s.done and s.refusal is None and s.fields == 1
    assert parse_headers(b"Subject: x\r\nthis is body text\r\n")["Subject"] == "x"
    # an mbox "From " line does not end it (the parser goes on reading fields after it)
    s = _scan(b"Subject: x\r\nFrom someone\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(10)))
    assert s.refusal is not None and s.refusal.rule == "too_many_header_fields"


def test_an_endless_field_name_is_refused_without_being_kept() -> None:
    s = HeaderScanner(SMALL)
    for _ in range(10):
        s.feed(b"x" * 30)
    assert s.refusal is not None and s.refusal.rule == "header_field_too_big"


def test_defaults_refuse_a_5_mb_line_and_100000_fields_early() -> None:
    s = HeaderScanner(HeaderLimits())
    fed = 0
    while s.feed(b"Subject: " + b"x" * 65527) is None:  # 64 KB pieces of one 5 MB line
        fed += 1
        assert fed < 80
    assert s.refusal is not None and s.refusal.code == 552 and fed <= 2
    s = HeaderScanner(HeaderLimits())
    assert s.feed(b"".join(b"X-F%d: v\r\n" % i for i in range(100_000))) is not None
    assert s.refusal is not None and s.refusal.code == 554 and s.fields == 1001
