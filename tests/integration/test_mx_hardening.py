"""Inputs that try to reach our trace headers, RFC musts, limits and shutdown."""
from __future__ import annotations

import smtplib
import socket
from email import message_from_bytes
from pathlib import Path

import pytest

from tests.integration.conftest import INS_ACTIVE, SENDER, RunningDaemon, message
from tests.integration.test_mx_refusals import _reply, _tls_session

RCPT = f"{INS_ACTIVE}@patient.mssante.fr"


@pytest.mark.parametrize("helo", [
    b"EHLO x\rAuthentication-Results: mx.patient.mssante.fr; x-mssante-tls=pass",
    b"EHLO two words",
    b"HELO x\x00y",
    b"EHLO caf\xc3\xa9.fr",
])
def test_helo_that_is_not_a_domain_is_refused(relay: RunningDaemon, helo: bytes) -> None:
    tls = _tls_session(relay)
    f = tls.makefile("rb")
    tls.sendall(helo + b"\r\n")
    assert _reply(f).startswith(b"501 5.5.4")
    tls.sendall(b"EHLO [127.0.0.1]\r\n")  # an address literal is fine
    assert _reply(f).startswith(b"250")
    tls.close()


def test_rcpt_with_a_control_character_is_refused(relay: RunningDaemon) -> None:
    tls = _tls_session(relay)
    f = tls.makefile("rb")
    tls.sendall(b"EHLO mail.test-operator.mssante.fr\r\n")
    _reply(f)
    tls.sendall(f"MAIL FROM:<{SENDER}>\r\n".encode())
    assert _reply(f).startswith(b"250")
    tls.sendall(b"RCPT TO:<279035121518989\r@patient.mssante.fr>\r\n")
    assert _reply(f).startswith(b"501 5.1.3")
    tls.sendall(b"RCPT TO:<279035121518989\x85@patient.mssante.fr>\r\n")
    assert _reply(f).startswith(b"501 5.1.3")
    tls.close()


def test_received_names_the_normalised_recipient(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        assert s.sendmail(SENDER, ["279035121518989@Patient.MSSante.fr"], message()) == {}
    received = message_from_bytes(relay.inbox(INS_ACTIVE)[0])["Received"]
    assert "for <279035121518989@patient.mssante.fr>" in received


@pytest.mark.parametrize("rcpt", ["postmaster@patient.mssante.fr", "<Postmaster@PATIENT.mssante.fr>"])
def test_postmaster_is_accepted(relay: RunningDaemon, rcpt: str) -> None:
    with relay.smtp() as s:
        assert s.sendmail(SENDER, [rcpt], message(subject="abuse report")) == {}
    assert len(relay.inbox("postmaster")) == 1


def test_second_starttls_refused(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        code, text = s.docmd("STARTTLS")
        assert (code, text[:5]) == (503, b"5.5.1")


def test_sessions_per_ip_capped(instance: Path) -> None:
    cfg = instance / "relay.toml"
    cfg.write_text(cfg.read_text().replace("max_sessions_per_ip = 50", "max_sessions_per_ip = 2"))
    relay = RunningDaemon(cfg).start()
    try:
        first, second = relay.smtp(), relay.smtp()
        third = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
        assert third.makefile("rb").readline().startswith(b"421 4.7.0")
        third.close()
        first.quit()
        # a slot is free again once a session ends
        with relay.smtp() as again:
            assert again.noop()[0] == 250
        second.quit()
    finally:
        relay.stop()


def test_no_new_transaction_while_stopping(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        assert relay.daemon.runtime is not None
        relay.loop.call_soon_threadsafe(setattr, relay.daemon.runtime, "stopping", True)
        relay.call(__import__("asyncio").sleep(0))
        code, text = s.mail(SENDER)
        assert (code, text[:5]) == (421, b"4.3.2")


def test_noop_flood_ends_the_session(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        replies = []
        for _ in range(150):
            try:
                replies.append(s.noop())
            except smtplib.SMTPServerDisconnected:
                break
        assert replies[-1][0] == 421 and replies[-1][1].startswith(b"4.7.0")
        assert len(replies) <= 102  # the limit (100 per session), then the 421
