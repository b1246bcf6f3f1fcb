"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.imap import utf7


@pytest.mark.parametrize("encoded, decoded", [
    ("~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/台北/日本語"),  # RFC 3501 §5.1.3
    ("&-", "&"),
    ("A&-B", "A&B"),
    ("&-&-", "&&"),
    ("INBOX", "INBOX"),
    ("", ""),
    ("Envoy&AOk-s", "Envoyés"),
    ("&AOkA6QDp-", "ééé"),
    ("&2D3eAA-", "\U0001F600"),  # a surrogate pair
    ("&AOk-&-", "é&"),
])
def test_examples(encoded: str, decoded: str) -> None:
    assert utf7.decode(encoded) == decoded
    assert utf7.encode(decoded) == encoded


@pytest.mark.parametrize("bad", [
    "&",              # unterminated shift
    "&U,BTFw",        # unterminated base64
    "&U,BTFw-&ZeVnLIqe-",  # two adjacent base64 runs: not canonical
    "&AGE-",          # "a" in base64: printable ASCII must stand for itself
    "&ACY-",          # "&" in base64: must be "&-"
    "&AOl-",          # non-zero padding bits
    "&AO-",           # cut in the middle of a UTF-16 unit
    "&AOkA-",         # odd number of octets
    "&2D0-",          # lone high surrogate
    "&3gA-",          # lone low surrogate
    "&2D3YPQ-",       # high surrogate followed by another high one
    "&A/k-",          # "/" is not in the modified alphabet
    "&A=k-",          # neither is padding
    "é",              # raw 8-bit: must be encoded
    "a\tb",           # control character
])
def test_malformed_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        utf7.decode(bad)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        utf7.encode("\ud800")


@given(st.text())
def test_round_trip(name: str) -> None:
    encoded = utf7.encode(name)
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert utf7.decode(encoded) == name


@given(st.text(alphabet="&-ABab+,/09 é\x00", max_size=20))
def test_decode_is_canonical(text: str) -> None:
    # whatever decode accepts, encode gives back byte for byte: one name, one spelling
    try:
        decoded = utf7.decode(text)
    except ValueError:
        return
    assert utf7.encode(decoded) == text
