"""Issue 3 with Python peers on loopback: a professional writes through our MX
(smtplib, mutual TLS), the patient answers through submission (smtplib, AUTH after
STARTTLS), our queue delivers to the professional's MX (an aiosmtpd server with the
operator's certificate, requiring ours), DKIM-signed. The conversation rules, DSNs,
the TEST address, read receipts and the queue across a restart.

The same lifecycle against a real Postfix is in test_postfix_e2e.py."""
from __future__ import annotations

import email
import email.policy
import smtplib
import ssl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from certs.dkim import DkimKey, generate_key, sign, txt_value, verify
from tests.integration.conftest import INS_ACTIVE, INS_PENDING, PASSWORD, SENDER, RunningDaemon, message
from tests.ports import free_port

PATIENT = f"{INS_ACTIVE}@patient.mssante.fr"


@dataclass
class Received:
    mail_from: str
    rcpts: list[str]
    content: bytes
    peer_cert: dict[str, Any] | None


@dataclass
class ProHandler:
    """The professional's operator MX: records what arrives, refuses unknown users."""

    received: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=lambda: {"inconnu@test-operator.mssante.fr"})

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if address.lower() in self.refuse:
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        cert = session.ssl["ssl_object"].getpeercert() if session.ssl else None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content, cert))
        return "250 OK queued"

    def wait(self, count: int, timeout: float = 20) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received


def pro_mx(pki: Path, port: int, handler: ProHandler) -> Controller:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "operator.pem", pki / "operator.key")
    ctx.load_verify_locations(cafile=str(pki / "ca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED  # MSSanté: our client certificate is required
    controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                            decode_data=False, server_hostname="mail.test-operator.mssante.fr")
    controller.start()
    return controller


@pytest.fixture
def world(instance: Path) -> Iterator[tuple[RunningDaemon, ProHandler, Path]]:
    port = free_port()
    config = instance / "relay.toml"
    config.write_text(config.read_text().replace('"127.0.0.1:2626"', f'"127.0.0.1:{port}"')
                      .replace("backoff = [60, 300, 900, 1800, 3600, 7200, 14400]", "backoff = [1]"))
    handler = ProHandler()
    controller = pro_mx(instance / "pki", port, handler)
    rd = RunningDaemon(config).start()
    try:
        yield rd, handler, instance
    finally:
        rd.stop()
        controller.stop()


def pro_writes(rd: RunningDaemon, subject: str = "Resultats", message_id: str = "<m1@test-operator.mssante.fr>",
               extra: str = "", sender: str = SENDER) -> None:
    raw = message(subject=subject, extra=extra, message_id=message_id, sender=sender)
    with rd.smtp() as s:
        assert s.sendmail(sender, [PATIENT], raw) == {}


def reply(to: str = SENDER, subject: str = "Re: Resultats", in_reply_to: str | None = "<m1@test-operator.mssante.fr>",
          body: str = "Merci docteur.\n", sender: str = PATIENT) -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = in_reply_to
    m.set_content(body)
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


def dkim_resolver(instance: Path) -> Any:
    key = DkimKey.load(instance / "keys/dkim.key", "mssante", "patient.mssante.fr")
    return lambda name: txt_value(key) if name.rstrip(b".") == b"mssante._domainkey.patient.mssante.fr" else None


def test_patient_replies_and_the_reply_arrives_signed(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, pro, instance = world
    pro_writes(rd)
    with rd.submission() as s:
        assert s.sendmail(PATIENT, [SENDER], reply()) == {}
    [got] = pro.wait(1)
    assert got.mail_from == PATIENT and got.rcpts == [SENDER]
    assert got.peer_cert is not None and "mx.patient.mssante.fr" in str(got.peer_cert["subject"])
    [result] = verify(got.content, resolver=dkim_resolver(instance))
    assert result.result == "pass" and result.domain == "patient.mssante.fr"
    msg = email.message_from_bytes(got.content)
    assert msg["Message-ID"] and msg["Date"]  # added at submission (RFC 6409 §8)
    sent = [rd.call(rd.store.fetch_raw(INS_ACTIVE, "Sent", m.uid))
            for m in rd.call(rd.store.messages(INS_ACTIVE, "Sent"))]
    assert len(sent) == 1 and b"Merci docteur." in sent[0]
    assert rd.call(rd.store.queue_items()) == []  # delivered: gone from the queue


def test_patient_cannot_write_first_nor_outside(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, _, _ = world
    with rd.submission() as s:
        s.mail(PATIENT)
        code, text = s.rcpt(SENDER)  # never wrote
        assert (code, text[:5]) == (550, b"5.7.1") and b"doit d'abord vous ecrire" in text
        code, text = s.rcpt(f"{INS_PENDING}@patient.mssante.fr")  # another patient
        assert (code, text[:5]) == (550, b"5.7.1") and b"professionnels" in text
        code, text = s.rcpt("ami@gmail.com")  # outside the trust space
        assert (code, text[:5]) == (550, b"5.7.1") and b"MSSante" in text


def test_fin_closes_and_a_new_message_reopens(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, pro, _ = world
    pro_writes(rd, subject="Resultats [FIN]")
    assert len(rd.inbox(INS_ACTIVE)) == 1  # delivered, then closed
    with rd.submission() as s:
        s.mail(PATIENT)
        code, text = s.rcpt(SENDER)
        assert (code, text[:5]) == (550, b"5.7.1") and b"clos" in text
    pro_writes(rd, subject="Nouveau rendez-vous", message_id="<m2@test-operator.mssante.fr>")
    with rd.submission() as s:
        assert s.sendmail(PATIENT, [SENDER], reply(in_reply_to="<m2@test-operator.mssante.fr>")) == {}
    assert len(pro.wait(1)) == 1


def test_x_mss_mes_fin_closes_only_that_message(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, pro, _ = world
    pro_writes(rd, extra="X-MSS-MES: FIN\r\n")
    with rd.submission() as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail(PATIENT, [SENDER], reply())
        assert e.value.smtp_code == 550 and b"n'attend pas de reponse" in e.value.smtp_error
    with rd.submission() as s:  # a new thread to the same professional is open
        assert s.sendmail(PATIENT, [SENDER], reply(in_reply_to=None, subject="Question")) == {}
    assert len(pro.wait(1)) == 1


def test_sending_as_someone_else_is_refused(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, _, _ = world
    pro_writes(rd)
    with rd.submission() as s:
        code, text = s.mail(f"{INS_PENDING}@patient.mssante.fr")
        assert (code, text[:5]) == (553, b"5.7.1")
    with rd.submission() as s:
        with pytest.raises(smtplib.SMTPDataError) as e:  # From header of someone else
            s.sendmail(PATIENT, [SENDER], reply(sender=f"{INS_PENDING}@patient.mssante.fr"))
        assert e.value.smtp_code == 553


def test_auth_only_after_tls_and_bad_password(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, _, _ = world
    plain = smtplib.SMTP("127.0.0.1", rd.daemon.submission_ports[0], timeout=30)
    try:
        plain.ehlo()
        assert not plain.has_extn("auth") and plain.has_extn("starttls")
        code, _ = plain.mail(PATIENT)
        assert code == 530
    finally:
        plain.close()
    with rd.submission(login=False) as s:
        assert s.has_extn("auth") and "PLAIN" in s.esmtp_features["auth"]
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(PATIENT, "wrong password")
        assert e.value.smtp_code == 535
    implicit = smtplib.SMTP_SSL("127.0.0.1", rd.daemon.submission_ports[1], timeout=30,
                                context=ssl.create_default_context(cafile=str(rd.pki("ca.pem"))))
    try:
        assert implicit.login(INS_ACTIVE, PASSWORD)[0] == 235  # the bare INS is a login too
    finally:
        implicit.close()
    mb = rd.call(rd.store.require_mailbox(INS_ACTIVE))
    logins = [e for e in rd.call(rd.store.audit_events(mb.id)) if e.action == "login"]
    assert logins and logins[-1].detail == "submission"  # audited with its protocol


def test_patient_attachment_over_5_mb_is_refused(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, _, _ = world
    pro_writes(rd)
    m = email.message_from_bytes(reply(), _class=EmailMessage, policy=email.policy.default)
    big = b"%PDF-1.4\n" + b"0" * (5 * 1024 * 1024 + 10) + b"\n%%EOF\n"
    m.add_attachment(big, maintype="application", subtype="pdf", filename="scan.pdf")
    with rd.submission() as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail(PATIENT, [SENDER], m.as_bytes(policy=m.policy.clone(linesep="\r\n")))
        assert e.value.smtp_code == 552 and b"scan.pdf" in e.value.smtp_error


def test_refused_recipient_gives_a_dsn_in_the_inbox(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, pro, _ = world
    unknown = "inconnu@test-operator.mssante.fr"
    pro_writes(rd, extra=f"Reply-To: {unknown}\r\n")  # an MSSanté Reply-To becomes a correspondent
    with rd.submission() as s:
        assert s.sendmail(PATIENT, [unknown], reply(to=unknown)) == {}
    deadline = time.monotonic() + 20
    while len(rd.inbox(INS_ACTIVE)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    dsn = email.message_from_bytes(rd.inbox(INS_ACTIVE)[-1])
    assert dsn.get_content_type() == "multipart/report" and dsn.get_param("report-type") == "delivery-status"
    status = dsn.get_payload()[1].as_string()
    assert "Action: failed" in status and "Status: 5.1.1" in status and unknown in status
    assert rd.call(rd.store.queue_items()) == [] and pro.received == []


def test_test_address_answers_the_professional(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, pro, _ = world
    raw = message(subject="TEST de messagerie", body="Ceci est un TEST.\r\n",
                  to="reponse.automatique-test@patient.mssante.fr")
    with rd.smtp() as s:
        assert s.sendmail(SENDER, ["reponse.automatique-test@patient.mssante.fr"], raw) == {}
    [got] = pro.wait(1)
    msg = email.message_from_bytes(got.content)
    assert got.mail_from == "<>" and got.rcpts == [SENDER]  # RFC 3834 §3.3: null reverse-path
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["From"] == "reponse.automatique-test@patient.mssante.fr"
    # an automatic message gets no answer (RFC 3834 §2): nothing more arrives
    with rd.smtp() as s:
        s.sendmail(SENDER, ["reponse.automatique-test@patient.mssante.fr"],
                   raw.replace(b"Subject:", b"Auto-Submitted: auto-generated\r\nSubject:", 1))
    time.sleep(1.5)
    assert len(pro.received) == 1


def test_read_receipt_on_first_seen_only(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, pro, _ = world
    pro_writes(rd, extra=f"Disposition-Notification-To: {SENDER}\r\n")
    client = rd.imap()
    try:
        client.select("INBOX")
        assert client.uid("FETCH", "1", "(BODY[])")[0] == "OK"  # sets \Seen
        client.uid("STORE", "1", "-FLAGS", "(\\Seen)")
        client.uid("STORE", "1", "+FLAGS", "(\\Seen)")
    finally:
        client.logout()
    [got] = pro.wait(1)
    time.sleep(1.0)
    assert len(pro.received) == 1  # sent once
    mdn = email.message_from_bytes(got.content)
    assert mdn.get_param("report-type") == "disposition-notification" and got.mail_from == "<>"
    assert "displayed" in mdn.get_payload()[1].as_string()


def test_seen_without_receipt_request_asks_no_writer_job(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    """\\Seen on a message with no read receipt pending is answered by a read, not a
    claim in the writer (issue 12 §3); the one with a request is still claimed, once."""
    rd, pro, _ = world
    calls: list[int] = []
    original = rd.store.claim_receipt

    async def counted(mailbox_id: int, folder: str, uid: int) -> tuple[str, str | None] | None:
        calls.append(uid)
        return await original(mailbox_id, folder, uid)

    rd.store.claim_receipt = counted  # type: ignore[method-assign]
    rd.deliver(message(subject="Sans accuse"))
    pro_writes(rd, extra=f"Disposition-Notification-To: {SENDER}\r\n")
    client = rd.imap()
    try:
        client.select("INBOX")
        assert client.uid("STORE", "1", "+FLAGS", "(\\Seen)")[0] == "OK"
        time.sleep(1.0)
        assert calls == []
        assert client.uid("STORE", "2", "+FLAGS", "(\\Seen)")[0] == "OK"
    finally:
        client.logout()
    [got] = pro.wait(1)
    assert calls == [2] and len(pro.received) == 1


def test_seen_on_many_messages_asks_one_read_per_burst(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    """A STORE setting \\Seen on several messages asks the store about their read
    receipts in one read, not one read (and one task) per message (issue 12 §3); the
    one message with a request still gets its receipt, once."""
    rd, pro, _ = world
    asked: list[list[int]] = []
    original = rd.store.receipts_pending

    async def counted(mailbox_id: int, folder: str, uids: list[int]) -> set[int]:
        asked.append(list(uids))
        return await original(mailbox_id, folder, uids)

    rd.store.receipts_pending = counted  # type: ignore[method-assign]
    for i in range(4):
        rd.deliver(message(subject=f"Sans accuse {i}", message_id=f"<burst-{i}@test-operator.mssante.fr>"))
    pro_writes(rd, extra=f"Disposition-Notification-To: {SENDER}\r\n")
    client = rd.imap()
    try:
        client.select("INBOX")
        assert client.uid("STORE", "1:*", "+FLAGS", "(\\Seen)")[0] == "OK"
    finally:
        client.logout()
    [got] = pro.wait(1)
    assert asked == [[1, 2, 3, 4, 5]]
    time.sleep(1.0)
    assert len(pro.received) == 1 and b"disposition-notification" in got.content


def test_no_receipt_to_another_address_nor_for_an_appended_message(world: tuple[RunningDaemon, ProHandler, Path]) \
        -> None:
    rd, pro, _ = world
    # a Disposition-Notification-To that is not the From: no receipt (RFC 8098 §2.1)
    pro_writes(rd, extra="Disposition-Notification-To: dr.durand@test-operator.mssante.fr\r\n")
    forged = message(subject="Appended", message_id="<app-1@test-operator.mssante.fr>",
                     extra=f"Disposition-Notification-To: {SENDER}\r\n")
    client = rd.imap()
    try:
        assert client.append("INBOX", None, None, forged)[0] == "OK"
        client.select("INBOX")
        assert client.uid("STORE", "1:*", "+FLAGS", "(\\Seen)")[0] == "OK"
    finally:
        client.logout()
    time.sleep(1.5)
    assert pro.received == []


def test_pharmacy_may_be_written_to_first(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, pro, instance = world
    pharmacy = "pharmacie.centrale@test-operator.mssante.fr"
    env = dict(os.environ, MSSANTE_RELAY_CONFIG=str(instance / "relay.toml"))
    cli = [sys.executable, "-m", "relay.cli", "pharmacy"]
    p = subprocess.run([*cli, "allow", INS_ACTIVE, pharmacy], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([*cli, "allow", INS_ACTIVE, "pharma@gmail.com"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "trust list" in p.stderr
    assert subprocess.run([*cli, "list", INS_ACTIVE], env=env, capture_output=True, text=True,
                          timeout=60).stdout.split() == [pharmacy]
    with rd.submission() as s:
        assert s.sendmail(PATIENT, [pharmacy], reply(to=pharmacy, in_reply_to=None, subject="Ordonnance")) == {}
    assert pro.wait(1)[0].rcpts == [pharmacy]
    assert subprocess.run([*cli, "revoke", INS_ACTIVE, pharmacy], env=env, capture_output=True,
                          timeout=60).returncode == 0
    with rd.submission() as s:
        s.mail(PATIENT)
        assert s.rcpt(pharmacy)[0] == 550


def test_queue_survives_a_restart(instance: Path) -> None:
    """The professional's MX is down: the reply waits in the queue across a daemon
    restart, then is delivered exactly once."""
    port = free_port()
    config = instance / "relay.toml"
    config.write_text(config.read_text().replace('"127.0.0.1:2626"', f'"127.0.0.1:{port}"')
                      .replace("backoff = [60, 300, 900, 1800, 3600, 7200, 14400]", "backoff = [1]"))
    rd = RunningDaemon(config).start()
    try:
        pro_writes(rd)
        with rd.submission() as s:
            assert s.sendmail(PATIENT, [SENDER], reply()) == {}
        deadline = time.monotonic() + 30  # a first attempt on a loaded CI machine took over 10 s
        while time.monotonic() < deadline:
            items = rd.call(rd.store.queue_items())
            if items and items[0].attempts >= 1:
                break
            time.sleep(0.1)
        assert items and items[0].attempts >= 1 and items[0].last_error
    finally:
        rd.stop()
    handler = ProHandler()
    controller = pro_mx(instance / "pki", port, handler)
    rd = RunningDaemon(config).start()
    try:
        assert len(handler.wait(1)) == 1
        time.sleep(1.5)
        assert len(handler.received) == 1 and rd.call(rd.store.queue_items()) == []
    finally:
        rd.stop()
        controller.stop()


def test_inbound_dkim_is_verified_into_authentication_results(world: tuple[RunningDaemon, ProHandler, Path],
                                                              tmp_path: Path) -> None:
    rd, _, _ = world
    generate_key(tmp_path / "pro-dkim.key")
    key = DkimKey.load(tmp_path / "pro-dkim.key", "pro1", "test-operator.mssante.fr")
    assert rd.daemon.runtime is not None
    rd.daemon.runtime.dkim_resolver = \
        lambda name: txt_value(key) if name.rstrip(b".") == b"pro1._domainkey.test-operator.mssante.fr" else None
    raw = message(subject="Signe", message_id="<dkim-1@test-operator.mssante.fr>")
    signed = sign(raw, key) + raw
    tampered = sign(raw, key) + raw.replace(b"Voici", b"Voila")
    with rd.smtp() as s:
        assert s.sendmail(SENDER, [PATIENT], signed) == {}
        assert s.sendmail(SENDER, [PATIENT], tampered) == {}
        assert s.sendmail(SENDER, [PATIENT], raw) == {}
    verdicts = [email.message_from_bytes(m)["Authentication-Results"] for m in rd.inbox(INS_ACTIVE)]
    assert "dkim=pass" in verdicts[0] and "header.d=test-operator.mssante.fr" in verdicts[0]
    assert "header.s=pro1" in verdicts[0] and "x-mssante-tls=pass" in verdicts[0]
    assert "dkim=fail" in verdicts[1]
    assert "dkim=none" in verdicts[2]


def test_notification_without_health_content_once_per_window(instance: Path) -> None:
    port = free_port()
    smarthost = ProHandler()
    controller = Controller(smarthost, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    config = instance / "relay.toml"
    config.write_text(config.read_text().replace('smarthost = ""', f'smarthost = "127.0.0.1:{port}"'))
    rd = RunningDaemon(config).start()
    try:
        p = subprocess.run([sys.executable, "-m", "relay.cli", "mailbox", "notify", INS_ACTIVE,
                            "patient.perso@example.org"], env=dict(os.environ, MSSANTE_RELAY_CONFIG=str(config)),
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        time.sleep(1.1)  # store.mailbox_cache_ttl: the daemon sees the CLI's change within it
        for i in range(2):  # the second falls within notifications.window: no second notice
            with rd.smtp() as s:
                assert s.sendmail(SENDER, [PATIENT], message(subject=f"Resultat VIH {i}",
                                                             body="Serologie positive.\r\n")) == {}
        [notice] = smarthost.wait(1)
        time.sleep(1.0)
        assert len(smarthost.received) == 1
        assert notice.rcpts == ["patient.perso@example.org"]
        text = notice.content.decode()
        assert "VIH" not in text and "Serologie" not in text and "test-operator" not in text
        assert "Auto-Submitted: auto-generated" in text
    finally:
        rd.stop()
        controller.stop()


def test_queue_metrics_on_the_admin_port(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    import urllib.request
    rd, pro, _ = world
    pro_writes(rd)
    with rd.submission() as s:
        assert s.sendmail(PATIENT, [SENDER], reply()) == {}
    pro.wait(1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{rd.daemon.admin_port}/metrics", timeout=10) as r:
            body = r.read().decode()
        if 'mssante_delivery_attempts_total{kind="reply",result="sent"}' in body:
            break
        time.sleep(0.2)
    assert 'mssante_delivery_attempts_total{kind="reply",result="sent"}' in body
    assert "mssante_queue_depth" in body and "mssante_queue_oldest_age_seconds" in body
    assert 'mssante_submission_messages_total{code="250",result="accepted",rule="ok"}' in body


def test_bcc_never_leaves_and_a_duplicate_recipient_gets_one_copy(world: tuple[RunningDaemon, ProHandler, Path]) \
        -> None:
    rd, pro, _ = world
    pro_writes(rd)
    raw = reply().replace(b"Subject:", f"Bcc: {SENDER}\r\nSubject:".encode(), 1)
    with rd.submission() as s:
        s.mail(PATIENT)
        assert s.rcpt(SENDER)[0] == 250
        code, text = s.rcpt(SENDER.upper())
        assert code == 250 and b"duplicate" in text
        assert s.data(raw)[0] == 250
    [got] = pro.wait(1)
    time.sleep(1.0)
    assert len(pro.received) == 1 and b"Bcc:" not in got.content


def test_a_guardian_answers_as_the_child(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, pro, _ = world
    child = f"{INS_PENDING}@patient.mssante.fr"
    rd.call(rd.store.add_guardian(INS_PENDING, INS_ACTIVE))
    with rd.smtp() as s:  # the professional writes to the child
        assert s.sendmail(SENDER, [child], message(to=child, message_id="<child-1@test-operator.mssante.fr>")) == {}
    with rd.submission() as s:  # the parent, logged in as themselves, answers as the child
        assert s.sendmail(child, [SENDER], reply(sender=child, in_reply_to="<child-1@test-operator.mssante.fr>")) \
            == {}
    [got] = pro.wait(1)
    assert got.mail_from == child
    assert len(rd.call(rd.store.messages(INS_PENDING, "Sent"))) == 1  # kept in the child's Sent
    assert rd.call(rd.store.messages(INS_ACTIVE, "Sent")) == []
