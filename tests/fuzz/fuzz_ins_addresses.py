"""Fuzz harness for the INS matricule and patient-address parsers (policy/ins.py,
policy/addresses.py) and the address normalisation of the conversation rules.

The contracts:
- `parse_ins` returns an Ins or raises InsError, nothing else; `is_valid_ins` agrees;
  an accepted INS is 15 ASCII characters, upper case, whose key verifies. ASCII matters:
  `str.upper()` maps some non-ASCII characters to ASCII ones, and full-width digits
  are digits to `\\d`; a local part that is not the INS itself must never name one;
- `split_address` and `classify` never raise; an address classified PATIENT carries
  the INS of its local part, in our domain, both ASCII;
- `valid_helo` never raises and accepts only printable ASCII without spaces (the name
  goes into our Received field); `normalise_address` never raises and gives ASCII.

    python tests/fuzz/fuzz_ins_addresses.py -max_total_time=600 /tmp/ins-work
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing import instrumented, main  # noqa: E402

with instrumented("policy.ins", "policy.addresses", "policy.conversation"):
    from policy import addresses, conversation, ins  # noqa: E402


def _check_ins(text: str) -> None:
    try:
        value = ins.parse_ins(text)
    except ins.InsError as exc:
        assert not ins.is_valid_ins(text)
        str(exc)
        return
    assert ins.is_valid_ins(text)
    v = value.value
    assert len(v) == 15 and v.isascii() and v == v.upper() and text.isascii(), (text, v)
    assert v.upper() == text.upper()
    assert int(v[13:]) == ins.ins_key(v[:13])


def test_one_input(data: bytes) -> None:
    # as aiosmtpd hands it over (UTF-8, RFC 6531), and with every byte a character
    for text in (data.decode("utf-8", "replace"), data.decode("latin-1")):
        _check(text)


def _check(text: str) -> None:
    _check_ins(text)
    _check_ins(text[:15])
    addr = addresses.split_address(text)
    if addr is not None:
        found = addresses.classify(addr)
        if found.kind is addresses.AddressKind.PATIENT:
            assert found.ins is not None and found.ins.value == addr.local.upper(), (addr, found)
            assert addr.local.isascii() and addr.domain == addresses.PATIENT_DOMAIN, addr
        elif found.kind is addresses.AddressKind.BAD_PATIENT:
            assert found.reason
    if addresses.valid_helo(text):  # it goes into our Received field as it is
        assert text.isascii() and text.isprintable() and " " not in text, text
    norm = conversation.normalise_address(text)
    if norm is not None:
        assert norm.isascii() and norm == norm.lower() and norm.count("@") == 1, norm


DICTIONARY = [b"@patient.mssante.fr", b"@PATIENT.MSSANTE.FR.", b"2A", b"2B", b"2a", b"279035121518989",
              b"185022A12345682", b"reponse.automatique-test", b"postmaster", b"<", b">", b"\xef\xbc\x92",
              b"\xc4\xb0", b"\xe2\x84\xaa", b"[IPv6:", b"[127.0.0.1]", b"\"", b"\\", b".."]

if __name__ == "__main__":
    main(sys.argv, "ins_addresses", test_one_input, DICTIONARY)
