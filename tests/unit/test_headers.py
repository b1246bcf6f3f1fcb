"""policy/headers.py: the header section alone, and fields removed from it."""
from __future__ import annotations

from policy.headers import header_block, parse_headers, without_fields

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
