"""The PostfixPeer helper itself, without our daemon: a real private Postfix relays to an aiosmtpd
"our MX" over mutual TLS, receives over mandatory STARTTLS + client certificate into Maildirs,
refuses unknown local parts at RCPT, retries on flush, and starts/stops cleanly twice."""
from __future__ import annotations

import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from certs.pki import write_dev_pki
from tests.ports import free_port

from .postfix_peer import OPERATOR_DOMAIN, PostfixPeer, _pids_with_cwd_under, postfix_unavailable_reason

_REASON = postfix_unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"PostfixPeer unavailable: {_REASON}")


class _Recorder:
    """aiosmtpd handler remembering each message with the TLS client certificate it came with."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("refused"):
            return "550 5.1.1 <%s>: unknown mailbox" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        extra = session.ssl or {}
        with self.cond:
            self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                  "data": envelope.content, "peercert": extra.get("peercert"),
                                  "cipher": extra.get("cipher")})
            self.cond.notify_all()
        return "250 2.0.0 Ok: stored"

    def wait(self, count: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.messages)}/{count} message(s) reached the fake MX")
                self.cond.wait(left)
            return list(self.messages)


def _fake_our_mx(pki: Path, port: int) -> tuple[Controller, _Recorder]:
    """'Our MX': STARTTLS required, client certificate required and verified against ca.pem."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    rec = _Recorder()
    ctl = Controller(rec, hostname="127.0.0.1", port=port, server_hostname="mx.patient.mssante.fr",
                     tls_context=ctx, require_starttls=True, ready_timeout=10)
    ctl.start()
    return ctl, rec


def _subject(peercert: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for rdn in peercert.get("subject", ()) for k, v in rdn)


def _client_ctx(pki: Path, cert: str | None = "server") -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    return ctx


def _msg(to: str, subject: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"dr.martin@{OPERATOR_DOMAIN}"
    m["To"] = to
    m["Subject"] = subject
    m.set_content("Bonjour,\nresultats en piece jointe.\n")
    return m


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("peer-pki") / "pki"
    write_dev_pki(d)
    return d


@pytest.fixture(scope="module")
def stack(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostfixPeer, _Recorder]]:
    ctl, rec = _fake_our_mx(pki, free_port())
    try:
        with PostfixPeer(tmp_path_factory.mktemp("peer"), pki, our_mx=("127.0.0.1", ctl.port),
                         relay_port=free_port(), mx_port=free_port(), users=["dr.martin", "ide.dupont"]) as peer:
            yield peer, rec
    finally:
        ctl.stop()


def test_relays_to_our_mx_with_mutual_tls(stack: tuple[PostfixPeer, _Recorder]) -> None:
    peer, rec = stack
    before = len(rec.messages)
    refused = peer.send(_msg("279035121518989@patient.mssante.fr", "CR consultation"))
    assert refused == {}
    got = rec.wait(before + 1, timeout=20)[-1]
    assert got["from"] == f"dr.martin@{OPERATOR_DOMAIN}"
    assert got["to"] == ["279035121518989@patient.mssante.fr"]
    assert b"Subject: CR consultation" in got["data"]
    # the client certificate Postfix presented is the operator's, verified by our side
    assert got["peercert"], "no client certificate seen by the fake MX"
    assert "test-operator" in _subject(got["peercert"])
    assert got["cipher"][1] in ("TLSv1.2", "TLSv1.3")
    # and Postfix verified ours (level secure, match=mx.patient.mssante.fr)
    peer.wait_for_log(r"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+")
    peer.wait_for_log(r"to=<279035121518989@patient\.mssante\.fr>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+.*status=sent")
    peer.wait_queue_empty(timeout=10)


def test_relay_side_refuses_other_destinations(stack: tuple[PostfixPeer, _Recorder]) -> None:
    peer, _ = stack
    # nothing but our domain and the operator's own may leave: error transport, refused at RCPT
    with smtplib.SMTP(*peer.relay_address, timeout=10) as s:
        s.ehlo("client.test")
        s.mail(f"ide.dupont@{OPERATOR_DOMAIN}")
        code, text = s.rcpt("someone@example.org")
        assert code == 550 and b"outbound delivery disabled" in text, (code, text)
        s.rset()


def test_refusal_by_our_mx_bounces_to_the_sender(stack: tuple[PostfixPeer, _Recorder]) -> None:
    peer, _ = stack
    n = len(peer.maildir("ide.dupont"))
    m = _msg("refused.000@patient.mssante.fr", "to a closed mailbox")
    m.replace_header("From", f"ide.dupont@{OPERATOR_DOMAIN}")
    peer.send(m)
    dsn = peer.wait_for_mail("ide.dupont", n + 1, timeout=20)[-1]
    assert b"multipart/report; report-type=delivery-status" in dsn
    assert b"Final-Recipient: rfc822; refused.000@patient.mssante.fr" in dsn
    assert b"550 5.1.1" in dsn


def test_mx_side_delivers_to_maildir(stack: tuple[PostfixPeer, _Recorder], pki: Path) -> None:
    peer, _ = stack
    n = len(peer.maildir("dr.martin"))
    with smtplib.SMTP(*peer.mx_address, timeout=10) as s:
        s.ehlo("mx.patient.mssante.fr")
        s.starttls(context=_client_ctx(pki))
        s.ehlo("mx.patient.mssante.fr")
        s.send_message(_msg(f"dr.martin@{OPERATOR_DOMAIN}", "Reponse patient"),
                       from_addr="279035121518989@patient.mssante.fr")
    msgs = peer.wait_for_mail("dr.martin", n + 1, timeout=20)
    assert b"Subject: Reponse patient" in msgs[-1]
    assert b"Delivered-To: dr.martin@test-operator.mssante.fr" in msgs[-1]
    # the Received header records the verified client certificate
    assert b"(Client CN \"mx.patient.mssante.fr\"" in msgs[-1]
    assert (Path(peer.workdir) / "maildir" / "dr.martin" / "new").is_dir()


def test_mx_side_refuses_unknown_local_part(stack: tuple[PostfixPeer, _Recorder], pki: Path) -> None:
    peer, _ = stack
    with smtplib.SMTP(*peer.mx_address, timeout=10) as s:
        s.starttls(context=_client_ctx(pki))
        s.ehlo("mx.patient.mssante.fr")
        s.mail("279035121518989@patient.mssante.fr")
        code, text = s.rcpt(f"nobody@{OPERATOR_DOMAIN}")
        assert code == 550 and text.startswith(b"5.1.1"), (code, text)
        code, text = s.rcpt("someone@elsewhere.example")
        assert code == 554 and b"Relay access denied" in text, (code, text)
        code, _ = s.rcpt(f"dr.martin@{OPERATOR_DOMAIN}")
        assert code == 250
        s.rset()


def test_mx_side_requires_starttls_and_client_cert(stack: tuple[PostfixPeer, _Recorder], pki: Path) -> None:
    peer, _ = stack
    with smtplib.SMTP(*peer.mx_address, timeout=10) as s:
        code, text = s.mail("279035121518989@patient.mssante.fr")
        assert code == 530 and b"STARTTLS" in text, (code, text)
    with smtplib.SMTP(*peer.mx_address, timeout=10) as s:
        s.starttls(context=_client_ctx(pki, cert=None))
        s.ehlo("mx.patient.mssante.fr")
        try:
            code, text = s.mail("279035121518989@patient.mssante.fr")
        except smtplib.SMTPServerDisconnected:
            code, text = 421, b"disconnected"
        assert code >= 400, (code, text)


def test_our_mx_certificate_is_really_checked(pki: Path, tmp_path: Path) -> None:
    ctl, rec = _fake_our_mx(pki, free_port())
    try:
        with PostfixPeer(tmp_path / "peer", pki, our_mx=("127.0.0.1", ctl.port), relay_port=free_port(),
                         mx_port=free_port(), users=["dr.martin"], our_mx_name="mx.other.example") as peer:
            peer.send(_msg("279035121518989@patient.mssante.fr", "must not leave"))
            peer.wait_for_log(r"dsn=4\.7\.5, status=deferred \(Server certificate not verified\)")
            assert rec.messages == []
    finally:
        ctl.stop()


def test_deferred_mail_goes_out_on_flush(pki: Path, tmp_path: Path) -> None:
    mx_port = free_port()  # our MX is down at first: the message is deferred
    with PostfixPeer(tmp_path / "peer", pki, our_mx=("127.0.0.1", mx_port), relay_port=free_port(),
                     mx_port=free_port(), users=["dr.martin"], retry_seconds=300) as peer:
        peer.send(_msg("160017512300140@patient.mssante.fr", "retry me"))
        peer.wait_for_log(r"status=deferred")
        assert "160017512300140@patient.mssante.fr" in peer.queue()
        ctl, rec = _fake_our_mx(pki, mx_port)
        try:
            peer.flush()
            got = rec.wait(1, timeout=20)
            assert b"Subject: retry me" in got[0]["data"]
            peer.wait_queue_empty(timeout=10)
        finally:
            ctl.stop()


def test_start_stop_twice(pki: Path, tmp_path: Path) -> None:
    peer = PostfixPeer(tmp_path / "peer", pki, our_mx=("127.0.0.1", free_port()), relay_port=free_port(),
                       mx_port=free_port(), users=["dr.martin"])
    try:
        for _ in range(2):
            peer.start()
            assert peer.running
            master = peer.master_pid
            spool = peer.queue_directory
            assert master in _pids_with_cwd_under(spool)
            with smtplib.SMTP(*peer.relay_address, timeout=10) as s:
                assert s.noop()[0] == 250
            peer.stop()
            assert not peer.running
            assert _pids_with_cwd_under(spool) == [], "Postfix processes left behind"
            for port in (peer.relay_port, peer.mx_port):
                with pytest.raises(OSError):
                    smtplib.SMTP("127.0.0.1", port, timeout=2).close()
        assert peer.log().count("daemon started") == 2  # same instance directory, restarted cleanly
        root = peer.root
        assert root is not None
    finally:
        peer.close()
    # close() leaves nothing outside workdir and no dangling symlink inside it
    assert root.is_relative_to(tmp_path) or not root.exists()
    for name in ("postfix", "maildir"):
        link = tmp_path / "peer" / name
        assert not link.is_symlink() or link.exists()
