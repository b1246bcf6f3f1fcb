"""relay/smtp/trace.py: trace headers and the checks on the raw message."""
from __future__ import annotations

import datetime as dt
from email import message_from_bytes

import pytest

from relay.smtp.trace import (Channel, address_literal, authserv_id, has_bare_line_ending, quoted,
                              strip_own_auth_results, trace_headers)

OWN = "mx.patient.mssante.fr"
BODY = b"\r\nBonjour\r\n"


@pytest.mark.parametrize("header", [
    b"Authentication-Results: mx.patient.mssante.fr; x=pass\r\n",
    b"Authentication-Results: MX.PATIENT.MSSANTE.FR; x=pass\r\n",
    b"Authentication-Results:\r\n mx.patient.mssante.fr; x=pass\r\n",              # folded
    b"Authentication-Results: (forged) mx.patient.mssante.fr; x=pass\r\n",        # comment first
    b"Authentication-Results: (a (nested) one) mx.patient.mssante.fr; x=pass\r\n",
    b'Authentication-Results: "mx.patient.mssante.fr"; x=pass\r\n',               # quoted
    b"authentication-results : mx.patient.mssante.fr 1; x=pass\r\n",             # version, spacing
])
def test_forged_results_in_our_name_removed(header: bytes) -> None:
    raw = b"From: a@b.fr\r\n" + header + b"Subject: x\r\n" + BODY
    out = strip_own_auth_results(raw, OWN)
    assert out == b"From: a@b.fr\r\nSubject: x\r\n" + BODY


def test_other_authserv_ids_kept() -> None:
    raw = (b"Authentication-Results: mail.operateur.fr; dkim=pass\r\n"
           b"Authentication-Results: mx.patient.mssante.fr.evil.fr; x=pass\r\n\tfolded=1\r\n" + BODY)
    assert strip_own_auth_results(raw, OWN) == raw


def test_body_never_touched() -> None:
    raw = b"Subject: x\r\n\r\nAuthentication-Results: mx.patient.mssante.fr; x=pass\r\n"
    assert strip_own_auth_results(raw, OWN) == raw


def test_authserv_id_parsing() -> None:
    assert authserv_id(b' (c) "Mx.Example.FR" 1 ; spf=pass') == "mx.example.fr"
    assert authserv_id(b"") == ""


def test_quoted_escapes_controls_and_non_ascii() -> None:
    q = quoted('CN=a\r\nX-Evil: 1,O="Santé"\\')
    assert "\r" not in q and "\n" not in q and q.isascii()
    assert q.startswith('"') and q.endswith('"') and '\\"Sant' in q


def test_address_literals() -> None:
    assert address_literal("127.0.0.1") == "[127.0.0.1]"
    assert address_literal("::1") == "[IPv6:::1]"
    assert address_literal("2001:0db8::0001") == "[IPv6:2001:db8::1]"
    assert address_literal("nonsense") == "[unknown]"


def test_bare_line_endings() -> None:
    assert not has_bare_line_ending(b"a\r\nb\r\n")
    assert has_bare_line_ending(b"a\nb\r\n")
    assert has_bare_line_ending(b"a\rb\r\n")
    assert has_bare_line_ending(b"a\r\n\n")


def test_trace_headers_parse_and_carry_the_channel() -> None:
    ch = Channel(helo="mail.op.mssante.fr", peer_ip="::1", tls_version="TLSv1.3",
                 tls_cipher="TLS_AES_256_GCM_SHA384", cert_subject="CN=mail\r\nX: y,O=Op",
                 sender_domain="op.mssante.fr")
    head = trace_headers(ch, OWN, "q1", "279035121518989@patient.mssante.fr",
                         dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc))
    msg = message_from_bytes(head + b"Subject: s\r\n\r\nbody\r\n")
    assert msg["Subject"] == "s" and msg.defects == []
    assert "[IPv6:::1]" in msg["Received"] and "for <279035121518989@patient.mssante.fr>" in msg["Received"]
    ar = msg["Authentication-Results"]
    assert ar.startswith(OWN + ";") and "smtp.mailfrom=op.mssante.fr" in ar and "X: y" not in msg.keys()
    assert authserv_id(ar.encode()) == OWN
