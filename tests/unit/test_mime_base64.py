"""policy/mime.py's base64 decoding: the fast decoder (pybase64) gives exactly what
binascii's lenient decode gives, on any input the fast path takes (RFC 2045 §6.8)."""
from __future__ import annotations

import base64
import binascii
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from policy import mime
from tests.examples import examples

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
NOISE = b"\r\n \t=-_.!\x00\xff\xe9"


def _reference(data: bytes) -> bytes:
    """policy/mime.py's decoding on binascii alone (before the fast decoder)."""
    if b"=" not in data.rstrip(b"=\r\n \t"):
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            pass
    clean = mime._NOT_BASE64.sub(b"", data.split(b"=", 1)[0])
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))


def _same(data: bytes) -> None:
    assert mime.decode_cte(data, "base64") == _reference(data), data


def test_the_fast_decoder_is_in_use() -> None:
    assert mime._a2b_base64 is not binascii.a2b_base64  # pybase64, a dependency


@settings(max_examples=examples(3000), deadline=None)
@given(st.lists(st.sampled_from(list(ALPHABET + NOISE)), max_size=200).map(bytes))
def test_fast_decoding_matches_binascii_on_any_mixture(data: bytes) -> None:
    _same(data)


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 80), st.sampled_from([b"\r\n", b"\n", b" ", b""]))
def test_fast_decoding_matches_binascii_on_wrapped_text(payload: bytes, cut: int, eol: bytes) -> None:
    text = base64.b64encode(payload)
    lines = [text[i:i + 76] for i in range(0, len(text), 76)] or [b""]
    wrapped = eol.join(lines) + eol
    _same(wrapped)
    _same(wrapped[:len(wrapped) - cut])  # truncated: a padding error in both, or the same bytes
    assert mime.decode_cte(wrapped, "base64") == payload


def test_a_500_kb_attachment_decodes_the_same() -> None:
    payload = os.urandom(500 * 1024)
    wrapped = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    assert mime.decode_cte(wrapped, "base64") == payload


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(list(ALPHABET + NOISE)), max_size=200).map(bytes),
       st.sampled_from([b"", b"x=", b"QQ==\r\n", b"===", b"\r\n"]))
def test_a_part_decodes_in_place_as_its_copied_body_does(body: bytes, after: bytes) -> None:
    # Part.decoded() reads the body where it lies in the message (no copy of it first):
    # the same bytes as decoding the copy, whatever follows it in the message
    raw = (b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
           b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + body + b"\r\n--b\r\nContent-Type: text/plain\r\n\r\n" + after + b"=\r\n--b--\r\n")
    part = mime.parse(raw).children[0]
    assert part.end < len(raw) - len(after)
    assert part.decoded() == _reference(part.body) == mime.decode_cte(part.body, "base64")
