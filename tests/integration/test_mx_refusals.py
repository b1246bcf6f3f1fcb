"""Every refusal of the MX, with its exact code, from a real client on loopback."""
from __future__ import annotations

import socket
from pathlib import Path
import ssl
import smtplib

import pytest

from tests.integration.conftest import (INS_ACTIVE, INS_CLOSED, INS_OPPOSED, INS_PENDING, INS_UNKNOWN, SENDER,
                                        RunningDaemon, message)

RCPT = f"{INS_ACTIVE}@patient.mssante.fr"


def _assert_nothing_stored(relay: RunningDaemon) -> None:
    assert relay.inbox(INS_ACTIVE) == []


def test_mail_without_starttls(relay: RunningDaemon) -> None:
    with relay.smtp(starttls=False) as s:
        code, text = s.mail(SENDER)
        assert (code, text[:5]) == (530, b"5.7.0")
        assert b"STARTTLS" in text


def test_tls_without_client_certificate(relay: RunningDaemon) -> None:
    with relay.smtp(cert=None) as s:
        code, text = s.mail(SENDER)
        assert (code, text[:5]) == (530, b"5.7.0")
        assert b"certificate" in text


def test_certificate_from_another_ca_fails_the_handshake(relay: RunningDaemon) -> None:
    s = smtplib.SMTP("127.0.0.1", relay.port, timeout=30)
    s.ehlo()
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionResetError)):
        s.starttls(context=relay.client_context("untrusted"))
        # TLS 1.3: the server's alert may only arrive with the first read
        s.ehlo()
        s.mail(SENDER)
    s.close()
    _assert_nothing_stored(relay)


def test_listed_domain_with_another_certificate_dn(relay: RunningDaemon) -> None:
    with relay.smtp(cert="other") as s:
        code, text = s.mail(SENDER)
        assert (code, text[:5]) == (550, b"5.7.1")
        assert b"liste blanche" in text and b"trust list" in text


def test_trusted_certificate_with_unlisted_domain(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        code, text = s.mail("dr.x@not-listed.mssante.fr")
        assert (code, text[:5]) == (550, b"5.7.1")


def test_null_sender_with_unknown_certificate(relay: RunningDaemon) -> None:
    with relay.smtp(cert="other") as s:
        assert s.mail("<>")[0] == 550


@pytest.mark.parametrize("rcpt, code, status", [
    ("someone@example.org", 550, b"5.7.1"),                    # relay denied
    ("279035121518989@mssante.fr", 550, b"5.7.1"),             # near miss on the domain
    ("279035121518988@patient.mssante.fr", 501, b"5.1.3"),     # wrong key
    ("27903512151898@patient.mssante.fr", 501, b"5.1.3"),      # 14 characters
    ("dr.house@patient.mssante.fr", 501, b"5.1.3"),            # not an INS
    (f"{INS_UNKNOWN}@patient.mssante.fr", 550, b"5.1.1"),
    (f"{INS_OPPOSED}@patient.mssante.fr", 550, b"5.2.1"),
    (f"{INS_CLOSED}@patient.mssante.fr", 550, b"5.2.1"),
])
def test_rcpt_refusals(relay: RunningDaemon, rcpt: str, code: int, status: bytes) -> None:
    with relay.smtp() as s:
        assert s.mail(SENDER)[0] == 250
        got, text = s.rcpt(rcpt)
        assert (got, text[:5]) == (code, status), text


def test_no_valid_recipient_then_data(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        s.mail(SENDER)
        s.rcpt(f"{INS_UNKNOWN}@patient.mssante.fr")
        code, text = s.docmd("DATA")
        assert code == 503 and text.startswith(b"5.5.1")


def test_size_declared_over_limit(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        code, text = s.mail(SENDER, ["SIZE=26214401"])
        assert (code, text[:5]) == (552, b"5.3.4")


def test_message_over_25_mb(relay: RunningDaemon) -> None:
    line = b"A" * 998 + b"\r\n"
    body = message() + line * (26 * 1024)  # ~26.6 MB
    with relay.smtp() as s:
        s.mail(SENDER)
        s.rcpt(RCPT)
        code, text = s.data(body)
        assert (code, text[:5]) == (552, b"5.3.4")
        # the session goes on after the refusal
        assert s.sendmail(SENDER, [RCPT], message()) == {}
    assert len(relay.inbox(INS_ACTIVE)) == 1


def _tls_session(relay: RunningDaemon) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", relay.port), timeout=30)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220")
    raw.sendall(b"EHLO mail.test-operator.mssante.fr\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    raw.sendall(b"STARTTLS\r\n")
    assert f.readline().startswith(b"220")
    tls = relay.client_context().wrap_socket(raw, server_hostname="localhost")
    return tls


def _reply(f: "socket.SocketIO") -> bytes:  # type: ignore[name-defined]
    lines = []
    while True:
        line = f.readline()
        assert line, "connection closed"
        lines.append(line)
        if line[3:4] == b" ":
            return b"".join(lines)


@pytest.mark.parametrize("payload", [
    # bare LF before the dot: the classic smuggling pair "\n.\r\n" / "\r\n.\n"
    b"Subject: a\r\n\r\nfirst\n.\r\nMAIL FROM:<evil@test-operator.mssante.fr>\r\n"
    b"RCPT TO:<279035121518989@patient.mssante.fr>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n",
    b"Subject: a\r\n\r\nfirst\r\n.\nMAIL FROM:<evil@test-operator.mssante.fr>\r\n"
    b"RCPT TO:<279035121518989@patient.mssante.fr>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n",
    b"Subject: a\r\n\r\nbare CR\rhere\r\n.\r\n",
])
def test_smuggling_bare_line_endings_refused(relay: RunningDaemon, payload: bytes) -> None:
    tls = _tls_session(relay)
    f = tls.makefile("rb")
    tls.sendall(b"EHLO mail.test-operator.mssante.fr\r\n")
    _reply(f)
    tls.sendall(f"MAIL FROM:<{SENDER}>\r\n".encode())
    assert _reply(f).startswith(b"250")
    tls.sendall(f"RCPT TO:<{RCPT}>\r\n".encode())
    assert _reply(f).startswith(b"250")
    tls.sendall(b"DATA\r\n")
    assert _reply(f).startswith(b"354")
    tls.sendall(payload if payload.endswith(b"\r\n.\r\n") else payload + b"\r\n.\r\n")
    assert _reply(f).startswith(b"500 5.5.2")
    tls.sendall(b"QUIT\r\n")
    tls.close()
    _assert_nothing_stored(relay)


def test_pipelined_plaintext_after_starttls_is_discarded(relay: RunningDaemon) -> None:
    raw = socket.create_connection(("127.0.0.1", relay.port), timeout=30)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220")
    raw.sendall(b"EHLO mail.test-operator.mssante.fr\r\n")
    _reply(f)
    # injected commands ride in the same packet as STARTTLS (CVE-2011-0411 class)
    raw.sendall(b"STARTTLS\r\nMAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<" + RCPT.encode() + b">\r\n")
    assert f.readline().startswith(b"220")
    tls = relay.client_context().wrap_socket(raw, server_hostname="localhost")
    tf = tls.makefile("rb")
    tls.sendall(b"NOOP\r\n")
    # the first answer inside TLS is NOOP's ("250 OK": no EHLO yet in the new session),
    # not a reply to the injected MAIL ("250 2.1.0 OK")
    assert _reply(tf) == b"250 OK\r\n"
    tls.sendall(b"RCPT TO:<" + RCPT.encode() + b">\r\n")
    assert _reply(tf)[:3] in (b"503",), "MAIL must not have been executed"
    tls.close()


def test_too_many_recipients(instance: Path) -> None:
    cfg = instance / "relay.toml"
    cfg.write_text(cfg.read_text().replace("max_recipients = 100", "max_recipients = 1"))
    relay = RunningDaemon(cfg).start()
    try:
        with relay.smtp() as s:
            s.mail(SENDER)
            assert s.rcpt(RCPT)[0] == 250
            code, text = s.rcpt(f"{INS_PENDING}@patient.mssante.fr")
            assert (code, text[:5]) == (452, b"4.5.3")
            assert s.data(message())[0] == 250
    finally:
        relay.stop()
