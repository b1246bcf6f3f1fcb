"""SIGHUP reload: trust list, certificates and CRLs, without dropping sessions."""
from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

import pytest

from certs.pki import load_ca, make_crl
from certs.trustlist import render_trust_list
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from tests.integration.conftest import INS_ACTIVE, SENDER, RunningDaemon, message

RCPT = f"{INS_ACTIVE}@patient.mssante.fr"


def _subject(pem: Path) -> str:
    return x509.load_pem_x509_certificate(pem.read_bytes()).subject.rfc4514_string()


def test_trust_list_reload_adds_a_domain_and_keeps_sessions(relay: RunningDaemon) -> None:
    base = relay.base
    with relay.smtp(cert="other") as open_session:
        assert open_session.mail("x@other-operator.mssante.fr")[0] == 550
        open_session.rset()
        (base / "trustlist.xml").write_text(render_trust_list([
            ("test-operator.mssante.fr", "test", _subject(base / "pki/operator.pem")),
            ("OTHER-operator.mssante.fr", "autre", _subject(base / "pki/other.pem")),
        ], "2026-11-23T00:00:00Z"))
        assert relay.daemon.reload() is True
        # the session opened before the reload goes on, under the new list
        assert open_session.mail("x@other-operator.mssante.fr")[0] == 250
        assert open_session.rcpt(RCPT)[0] == 250
        assert open_session.data(message())[0] == 250


def test_broken_trust_list_keeps_the_old_one(relay: RunningDaemon) -> None:
    path = relay.base / "trustlist.xml"
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # cut inside an entry
    assert relay.daemon.reload() is False
    with relay.smtp() as s:
        assert s.sendmail(SENDER, [RCPT], message()) == {}
    path.write_text(good)


def test_crl_reload_refuses_a_revoked_certificate(relay: RunningDaemon) -> None:
    base = relay.base
    ca = load_ca(base / "pki")
    operator = x509.load_pem_x509_certificate((base / "pki/operator.pem").read_bytes())
    (base / "pki/crl.pem").write_bytes(make_crl(ca, [operator]).public_bytes(Encoding.PEM))
    cfg = base / "relay.toml"
    cfg.write_text(cfg.read_text().replace("crls = []", 'crls = ["pki/crl.pem"]'))
    assert relay.daemon.reload() is True
    s = smtplib.SMTP("127.0.0.1", relay.port, timeout=30)
    s.ehlo()
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionResetError)):
        s.starttls(context=relay.client_context("operator"))
        s.ehlo()
        s.mail(SENDER)
    s.close()
    # a certificate of the same CA that is not revoked still passes the CRL check
    with relay.smtp(cert="other") as ok:
        assert ok.mail(SENDER)[0] == 550  # reaches the trust-list check: TLS accepted it


def test_strict_profile_refuses_tls13(instance: Path) -> None:
    cfg = instance / "relay.toml"
    cfg.write_text(cfg.read_text().replace('profile = "default"', 'profile = "strict"'))
    relay = RunningDaemon(cfg).start()
    try:
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionResetError)):
            ctx = relay.client_context()
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            s = smtplib.SMTP("127.0.0.1", relay.port, timeout=30)
            s.ehlo()
            s.starttls(context=ctx)
        with relay.smtp() as s:
            assert s.sock.version() == "TLSv1.2"
            assert s.sendmail(SENDER, [RCPT], message()) == {}
    finally:
        relay.stop()
