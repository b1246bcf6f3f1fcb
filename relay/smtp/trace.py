"""What the MX adds to a message it accepts: trace headers, and the checks on the raw
bytes that decide whether it may be stored at all. Pure functions."""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from email.utils import format_datetime

from policy.lineends import has_bare_line_ending  # noqa: F401 (mx.py's name)


def quoted(value: str) -> str:
    """RFC 5322 quoted-string holding an ASCII rendering of value: non-ASCII and
    control characters become backslash escapes, so nothing can fold or end a header."""
    out = []
    for ch in value:
        code = ord(ch)
        if code < 0x20 or code == 0x7F or code > 0x7E:
            out.append(ch.encode("unicode_escape").decode("ascii").replace("\\", "\\\\"))
        elif ch in '"\\':
            out.append("\\" + ch)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _strip_comments(value: str) -> str:
    """Remove RFC 5322 comments (nested parentheses, quoted-pairs)."""
    out, depth, i = [], 0, 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            if depth == 0:
                out.append(value[i:i + 2])
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
        i += 1
    return "".join(out)


def authserv_id(header_value: bytes) -> str:
    """The authserv-id of an Authentication-Results value (RFC 8601 §2.2): unfolded,
    comments removed, quotes removed, lower-cased."""
    text = header_value.decode("ascii", "replace").replace("\r\n", "").replace("\n", "")
    first = _strip_comments(text).split(";", 1)[0].strip()
    token = first.split()[0] if first.split() else ""
    if len(token) >= 2 and token[0] == token[-1] == '"':
        token = token[1:-1]
    return token.lower()


def strip_own_auth_results(raw: bytes, own_id: str) -> bytes:
    """Drop incoming Authentication-Results that claim our authserv-id (RFC 8601 §5):
    only we may speak in our name. Folded headers are read whole."""
    end = raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[:end + 2]
    body = memoryview(raw)[end + 2:] if end >= 0 else b""
    # group physical lines into fields (a line starting with SP/HTAB continues a field)
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    own = own_id.lower()
    kept = []
    for field in fields:
        name, colon, value = field[0].partition(b":")
        if colon and name.strip().lower() == b"authentication-results":
            if authserv_id(b"\r\n".join([value, *field[1:]])) == own:
                continue
        kept.append(b"\r\n".join(field))
    if len(kept) == len(fields):
        return raw  # nothing dropped: no copy of a message of up to 25 MB (issue 15 §2)
    return b"\r\n".join(kept) + body


def address_literal(ip: str) -> str:
    """RFC 5321 §4.1.3: [192.0.2.1] or [IPv6:2001:db8::1]."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "[unknown]"
    return f"[IPv6:{addr.compressed}]" if addr.version == 6 else f"[{addr}]"


@dataclass(frozen=True)
class Channel:
    """What the MX knows of the SMTP session when it accepts a message."""

    helo: str  # already checked by policy.addresses.valid_helo
    peer_ip: str
    tls_version: str
    tls_cipher: str
    cert_subject: str
    sender_domain: str | None  # None for the null reverse-path


def trace_headers(ch: Channel, our_host: str, queue_id: str, single_rcpt: str | None,
                  when: dt.datetime | None = None, more_results: str = "") -> bytes:
    """Received and Authentication-Results; `more_results`: further RFC 8601 resinfo
    (the DKIM verdicts, certs.dkim.auth_results), written after ours."""
    now = format_datetime(when or dt.datetime.now(dt.timezone.utc))
    rcpt = f"\r\n\tfor <{single_rcpt}>" if single_rcpt else ""
    # RFC 5321 §4.4 trace; "ESMTPS" = ESMTP over TLS (RFC 3848).
    received = (f"Received: from {ch.helo} ({address_literal(ch.peer_ip)})\r\n"
                f"\t(using {ch.tls_version} with cipher {ch.tls_cipher})\r\n"
                f"\tby {our_host} (mssante-relay) with ESMTPS id {queue_id}{rcpt};\r\n"
                f"\t{now}\r\n")
    # RFC 8601: our verdict on the channel; "x-" method, since no registered method
    # covers a TLS client certificate. No smtp.mailfrom for the null sender (§2.7.4
    # would read "null" as a domain).
    mailfrom = f" smtp.mailfrom={ch.sender_domain}" if ch.sender_domain else ""
    auth = (f"Authentication-Results: {our_host};\r\n"
            f"\tx-mssante-tls=pass{mailfrom}\r\n"
            f"\tpolicy.tls-version={ch.tls_version} policy.tls-cipher={ch.tls_cipher}\r\n"
            f"\tpolicy.client-cert-subject={quoted(ch.cert_subject)}"
            + (f";\r\n\t{more_results}" if more_results else "") + "\r\n")
    return (received + auth).encode("ascii")
