"""Modified UTF-7 for mailbox names (RFC 3501 §5.1.3, RFC 9051 §5.1.3).

IMAP4rev1 clients that did not ENABLE UTF8=ACCEPT (RFC 6855) send and expect mailbox
names in this form: printable US-ASCII stands for itself, "&" is "&-", and any other
run of characters is "&" + base64 of its UTF-16BE form (alphabet with "," instead of
"/", no padding) + "-".

decode() accepts only the canonical form. Two spellings of one name would let a client
create "look-alike" mailboxes the store sees as different, so we refuse what the RFC
forbids: printable ASCII inside base64, two adjacent base64 runs, non-zero padding bits,
broken surrogate pairs, raw 8-bit or control characters.
"""
from __future__ import annotations

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}


def _printable(c: str) -> bool:
    return 0x20 <= ord(c) <= 0x7E


def _b64encode(data: bytes) -> str:
    out: list[str] = []
    bits = 0
    nbits = 0
    for byte in data:
        bits = (bits << 8) | byte
        nbits += 8
        while nbits >= 6:
            nbits -= 6
            out.append(_ALPHABET[(bits >> nbits) & 0x3F])
    if nbits:
        out.append(_ALPHABET[(bits << (6 - nbits)) & 0x3F])
    return "".join(out)


def _b64decode(text: str) -> bytes:
    out = bytearray()
    bits = 0
    nbits = 0
    for c in text:
        value = _VALUE.get(c)
        if value is None:
            raise ValueError(f"modified UTF-7: invalid base64 character {c!a}")
        bits = ((bits << 6) | value) & 0xFFFFFF
        nbits += 6
        if nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
    # RFC 2152 / RFC 3501 §5.1.3: a run encodes whole 16-bit units; what is left over
    # must be fewer than 6 zero bits, else the text was cut or is not canonical.
    if nbits >= 6 or bits & ((1 << nbits) - 1):
        raise ValueError("modified UTF-7: truncated or non-canonical base64")
    if len(out) % 2:
        raise ValueError("modified UTF-7: odd number of UTF-16 octets")
    return bytes(out)


def encode(name: str) -> str:
    """The modified UTF-7 form of a mailbox name. Raises ValueError (UnicodeEncodeError)
    for a str holding a lone surrogate, which is no Unicode text."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            out.append("&" + _b64encode("".join(pending).encode("utf-16-be")) + "-")
            pending.clear()

    for c in name:
        if c == "&":
            flush()
            out.append("&-")
        elif _printable(c):
            flush()
            out.append(c)
        else:
            pending.append(c)
    flush()
    return "".join(out)


def decode(text: str) -> str:
    """The Unicode mailbox name of a modified UTF-7 one; ValueError when malformed."""
    out: list[str] = []
    i = 0
    previous_was_base64 = False
    while i < len(text):
        c = text[i]
        if not _printable(c):
            raise ValueError(f"modified UTF-7: character {c!a} must be base64-encoded")
        if c != "&":
            out.append(c)
            previous_was_base64 = False
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError("modified UTF-7: base64 run without closing '-'")
        run = text[i + 1:end]
        i = end + 1
        if not run:
            out.append("&")
            previous_was_base64 = False
            continue
        if previous_was_base64:
            # RFC 3501 §5.1.3 encodes a run of non-printable characters as one
            # base64 section; "&AAA-&AAA-" is a second spelling of "&AAAAAA-".
            raise ValueError("modified UTF-7: adjacent base64 runs")
        try:
            decoded = _b64decode(run).decode("utf-16-be")
        except UnicodeDecodeError as exc:
            raise ValueError("modified UTF-7: broken UTF-16 surrogate pair") from exc
        if any(_printable(ch) for ch in decoded):
            # RFC 3501 §5.1.3: printable US-ASCII (and "&", which is "&-") MUST
            # represent itself, never go through base64.
            raise ValueError("modified UTF-7: printable US-ASCII inside base64")
        out.append(decoded)
        previous_was_base64 = True
    return "".join(out)
