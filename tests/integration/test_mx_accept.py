"""The MX accepts trusted mail and stores it with its trace headers."""
from __future__ import annotations

from email import message_from_bytes

from tests.integration.conftest import (INS_ACTIVE, INS_PENDING, SENDER, RunningDaemon, message)


def test_ehlo_after_starttls_advertises_extensions(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        code, text = s.ehlo()
        assert code == 250
        ext = text.decode().upper().splitlines()
        for name in ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8", "SIZE 26214400"):
            assert name in ext, name
        assert not any(line.startswith("AUTH") for line in ext)
        assert "STARTTLS" not in ext  # RFC 3207 §4.2: not offered again


def test_operator_certificate_is_accepted_and_stored(relay: RunningDaemon) -> None:
    raw = message(extra="Authentication-Results: mx.patient.mssante.fr; x-mssante-tls=pass (forged)\r\n")
    with relay.smtp() as s:
        refused = s.sendmail(SENDER, [f"{INS_ACTIVE}@patient.mssante.fr",
                                      f"{INS_PENDING}@PATIENT.MSSANTE.FR"], raw)
        assert refused == {}
    for ins in (INS_ACTIVE, INS_PENDING):
        stored = relay.inbox(ins)
        assert len(stored) == 1
        msg = message_from_bytes(stored[0])
        assert stored[0].endswith(raw.split(b"\r\n\r\n", 1)[1])
        assert msg["Subject"] == "Compte rendu"
        received = msg.get_all("Received")
        assert received and "by mx.patient.mssante.fr" in received[0] and "ESMTPS" in received[0]
        results = msg.get_all("Authentication-Results")
        assert len(results) == 1, "the forged result with our authserv-id must be removed"
        ar = results[0]
        assert "x-mssante-tls=pass" in ar and "smtp.mailfrom=test-operator.mssante.fr" in ar
        assert "policy.tls-version=TLSv1.3" in ar
        assert "CN=mail.test-operator.mssante.fr" in ar


def test_tls12_with_mssante_suite(relay: RunningDaemon) -> None:
    with relay.smtp(tls13=False) as s:
        assert s.sock.version() == "TLSv1.2"
        assert s.sock.cipher()[0] in {"ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256",
                                      "ECDHE-RSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA256"}
        assert s.sendmail(SENDER, [f"{INS_ACTIVE}@patient.mssante.fr"], message()) == {}
    assert "policy.tls-version=TLSv1.2" in message_from_bytes(relay.inbox(INS_ACTIVE)[0])["Authentication-Results"]


def test_per_recipient_answers(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        s.mail(SENDER)
        assert s.rcpt(f"{INS_ACTIVE}@patient.mssante.fr")[0] == 250
        code, text = s.rcpt("160017512300141@patient.mssante.fr")  # bad key
        assert (code, text[:5]) == (501, b"5.1.3")
        assert s.rcpt(f"{INS_PENDING}@patient.mssante.fr")[0] == 250
        code, _ = s.data(message())
        assert code == 250
    assert len(relay.inbox(INS_ACTIVE)) == 1 and len(relay.inbox(INS_PENDING)) == 1


def test_null_sender_from_trusted_operator(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        assert s.mail("<>")[0] == 250
        assert s.rcpt(f"{INS_ACTIVE}@patient.mssante.fr")[0] == 250
        assert s.data(message(subject="Non remis"))[0] == 250
    ar = message_from_bytes(relay.inbox(INS_ACTIVE)[0])["Authentication-Results"]
    assert "x-mssante-tls=pass" in ar and "smtp.mailfrom" not in ar  # RFC 8601: no domain to name


def test_eight_bit_and_utf8_content(relay: RunningDaemon) -> None:
    raw = message(subject="=?utf-8?q?R=C3=A9sultats?=", body="Résultats d'analyse: é à ç\r\n")
    with relay.smtp() as s:
        s.mail(SENDER, ["BODY=8BITMIME", "SMTPUTF8"])
        assert s.rcpt(f"{INS_ACTIVE}@patient.mssante.fr")[0] == 250
        assert s.data(raw)[0] == 250
    assert relay.inbox(INS_ACTIVE)[0].endswith("Résultats d'analyse: é à ç\r\n".encode())


def test_duplicate_recipient_stored_once(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        s.sendmail(SENDER, [f"{INS_ACTIVE}@patient.mssante.fr", f"{INS_ACTIVE}@patient.mssante.fr"], message())
    assert len(relay.inbox(INS_ACTIVE)) == 1


def test_session_survives_a_refusal(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        s.mail(SENDER)
        assert s.rcpt("160017512300140@patient.mssante.fr")[0] == 550
        s.rset()
        assert s.sendmail(SENDER, [f"{INS_ACTIVE}@patient.mssante.fr"], message()) == {}


def test_unknown_command_has_enhanced_code(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        code, text = s.docmd("DATA")
        assert code == 503 and text.startswith(b"5.5.1")
        code, text = s.docmd("AUTH PLAIN AGFhAGI=")
        assert code == 502 and text.startswith(b"5.5.1")
