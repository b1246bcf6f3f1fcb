"""Issue 3 end to end with a REAL Postfix (postfix_peer.py) playing the professional's
operator, and our daemon as a real process (`mssante-relay serve`):

professional --smtp--> Postfix --mutual TLS--> our MX --> patient's INBOX
patient --submission (smtplib)--> our queue --mutual TLS, DKIM--> Postfix --> Maildir

Covered: the reply arrives; a patient-initiated message is refused; [FIN] then a
refused reply; X-MSS-MES: FIN; a re-opened exchange; the TEST auto-reply; a DSN when
Postfix refuses the recipient; an MDN on first read; and the queue across a SIGKILL
of the daemon, every acknowledged message delivered exactly once."""
from __future__ import annotations

import email
import imaplib
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.integration.conftest import INS_ACTIVE, PASSWORD, SENDER, seed_mailboxes
from tests.integration.test_conversations import reply
from tests.integration.postfix_peer import PostfixPeer, postfix_unavailable_reason
from tests.ports import free_port

pytestmark = pytest.mark.skipif(postfix_unavailable_reason() is not None,
                                reason=postfix_unavailable_reason() or "")
PATIENT = f"{INS_ACTIVE}@patient.mssante.fr"
PHARMACY = "officine@test-operator.mssante.fr"


class Daemon:
    """`mssante-relay serve` as a child process (so that it can be SIGKILLed)."""

    def __init__(self, instance: Path):
        self.instance = instance
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports = {name: free_port() for name in ("mx", "imap", "imaps", "sub", "subs", "admin")}

    def start(self) -> None:
        env = dict(os.environ, MSSANTE_RELAY_CONFIG=str(self.instance / "relay.toml"))
        self.proc = subprocess.Popen([sys.executable, "-m", "relay.cli", "serve"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.instance / "daemon.log", "ab"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with smtplib.SMTP("127.0.0.1", self.ports["sub"], timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.instance / "daemon.log").read_text()[-2000:]) from None
                time.sleep(0.1)
        raise TimeoutError("daemon did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def submission(self) -> smtplib.SMTP:
        s = smtplib.SMTP("127.0.0.1", self.ports["sub"], local_hostname="patient-laptop", timeout=30)
        s.starttls(context=ssl.create_default_context(cafile=str(self.instance / "pki/ca.pem")))
        s.login(PATIENT, PASSWORD)
        return s

    def imap(self) -> imaplib.IMAP4_SSL:
        ctx = ssl.create_default_context(cafile=str(self.instance / "pki/ca.pem"))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.ports["imaps"], ssl_context=ctx, timeout=30)
        client.login(PATIENT, PASSWORD)
        return client

    def inbox(self) -> list[bytes]:
        client = self.imap()
        try:
            client.select("INBOX", readonly=True)
            _, data = client.uid("SEARCH", "ALL")
            out = []
            for uid in data[0].split():
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                out.append(parts[0][1])
            return out
        finally:
            client.logout()

    def wait_inbox(self, count: int, timeout: float = 30) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.inbox()
            if len(got) >= count:
                return got
            time.sleep(0.2)
        raise TimeoutError(f"INBOX has {len(self.inbox())} messages, expected {count}")


def configure(instance: Path, ports: dict[str, int], postfix_mx: int) -> None:
    cfg = instance / "relay.toml"
    text = cfg.read_text()
    for section, key, port in (("mx", "listen", ports["mx"]), ("imap", "listen", ports["imap"]),
                               ("imap", "listen_tls", ports["imaps"]), ("submission", "listen", ports["sub"]),
                               ("submission", "listen_tls", ports["subs"]), ("admin", "listen", ports["admin"])):
        text = re.sub(rf'(\[{section}\][^\[]*?\n{key} = )"127\.0\.0\.1:\d+"', rf'\g<1>"127.0.0.1:{port}"', text,
                      count=1, flags=re.S)
    text = text.replace('"127.0.0.1:2626"', f'"127.0.0.1:{postfix_mx}"')
    text = text.replace("backoff = [60, 300, 900, 1800, 3600, 7200, 14400]", "backoff = [1]")
    cfg.write_text(text)


@pytest.fixture(scope="module")
def stack(template_instance: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, PostfixPeer]]:
    base = tmp_path_factory.mktemp("e2e")
    instance = base / "inst"
    shutil.copytree(template_instance, instance, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    seed_mailboxes(instance / "relay.toml")
    relay_port, mx_port = free_port(), free_port()
    daemon = Daemon(instance)
    configure(instance, daemon.ports, mx_port)
    peer = PostfixPeer(base / "postfix", instance / "pki", ("127.0.0.1", daemon.ports["mx"]), relay_port, mx_port,
                       ["dr.martin", "dr.durand", "officine"])
    daemon.start()
    peer.start()
    try:
        yield daemon, peer
    finally:
        daemon.stop()
        peer.close()


def pro_message(subject: str, message_id: str, extra: dict[str, str] | None = None) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Dr Martin <{SENDER}>"
    m["To"] = PATIENT
    m["Subject"] = subject
    m["Message-ID"] = message_id
    for k, v in (extra or {}).items():
        m[k] = v
    m.set_content("Bonjour,\nvoici vos resultats.\n")
    return m


def patient_message(subject: str, in_reply_to: str | None, to: str = SENDER) -> bytes:
    return reply(to=to, subject=subject, in_reply_to=in_reply_to, body="Merci.\n")


def subjects(messages: list[bytes]) -> list[str]:
    return [str(email.message_from_bytes(m)["Subject"]) for m in messages]


def professional_writes(daemon: Daemon, peer: PostfixPeer, subject: str, message_id: str,
                        extra: dict[str, str] | None = None) -> None:
    before = len(daemon.inbox())
    assert peer.send(pro_message(subject, message_id, extra), mail_from=SENDER, rcpt_tos=[PATIENT]) == {}
    daemon.wait_inbox(before + 1)


def test_conversation_lifecycle_through_postfix(stack: tuple[Daemon, PostfixPeer]) -> None:
    daemon, peer = stack
    # a patient may not start
    with daemon.submission() as s:
        s.mail(PATIENT)
        code, text = s.rcpt(SENDER)
        assert (code, text[:5]) == (550, b"5.7.1")
    # the professional writes through Postfix; the patient's reply reaches their Maildir
    professional_writes(daemon, peer, "Vos resultats", "<e2e-1@test-operator.mssante.fr>")
    with daemon.submission() as s:
        assert s.sendmail(PATIENT, [SENDER], patient_message("Re: Vos resultats",
                                                             "<e2e-1@test-operator.mssante.fr>")) == {}
    got = peer.wait_for_mail("dr.martin", 1)
    msg = email.message_from_bytes(got[0])
    assert msg["From"] == PATIENT and msg["In-Reply-To"] == "<e2e-1@test-operator.mssante.fr>"
    assert msg["DKIM-Signature"] is not None
    # [FIN] closes the exchange: the next reply is refused
    professional_writes(daemon, peer, "Compte rendu [FIN]", "<e2e-2@test-operator.mssante.fr>")
    with daemon.submission() as s:
        s.mail(PATIENT)
        code, text = s.rcpt(SENDER)
        assert (code, text[:5]) == (550, b"5.7.1") and b"clos" in text
    # a new professional message re-opens it
    professional_writes(daemon, peer, "Rendez-vous", "<e2e-3@test-operator.mssante.fr>",
                        {"X-MSS-MES": "FIN"})  # ...and this one takes no reply
    with daemon.submission() as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail(PATIENT, [SENDER], patient_message("Re: Rendez-vous", "<e2e-3@test-operator.mssante.fr>"))
        assert e.value.smtp_code == 550
        assert s.sendmail(PATIENT, [SENDER], patient_message("Question", None)) == {}
    got = peer.wait_for_mail("dr.martin", 2)
    assert sorted(subjects(got)) == ["Question", "Re: Vos resultats"]


def test_test_address_reply_reaches_the_professional(stack: tuple[Daemon, PostfixPeer]) -> None:
    daemon, peer = stack
    before = len(peer.maildir("dr.martin"))
    m = pro_message("TEST operateur", "<e2e-test@test-operator.mssante.fr>")
    del m["To"]
    m["To"] = "reponse.automatique-test@patient.mssante.fr"
    m.set_content("Message de TEST.\n")
    assert peer.send(m, mail_from=SENDER, rcpt_tos=["reponse.automatique-test@patient.mssante.fr"]) == {}
    got = peer.wait_for_mail("dr.martin", before + 1)
    answer = [email.message_from_bytes(g) for g in got if b"auto-replied" in g]
    assert answer and answer[-1]["From"] == "reponse.automatique-test@patient.mssante.fr"
    assert answer[-1]["In-Reply-To"] == "<e2e-test@test-operator.mssante.fr>"


def test_dsn_when_postfix_refuses_the_recipient(stack: tuple[Daemon, PostfixPeer]) -> None:
    daemon, peer = stack
    unknown = "inconnu@test-operator.mssante.fr"
    professional_writes(daemon, peer, "Secretariat", "<e2e-dsn@test-operator.mssante.fr>", {"Reply-To": unknown})
    before = len(daemon.inbox())
    with daemon.submission() as s:
        assert s.sendmail(PATIENT, [unknown], patient_message("Re: Secretariat", "<e2e-dsn@test-operator.mssante.fr>",
                                                              to=unknown)) == {}
    dsn = email.message_from_bytes(daemon.wait_inbox(before + 1)[-1])
    assert dsn.get_content_type() == "multipart/report"
    report = dsn.get_payload()[1].as_string()
    assert "Status: 5.1.1" in report and "Remote-MTA: dns; 127.0.0.1" in report and unknown in report


def test_mdn_on_first_read(stack: tuple[Daemon, PostfixPeer]) -> None:
    daemon, peer = stack
    before = len(peer.maildir("dr.martin"))
    professional_writes(daemon, peer, "Merci de confirmer", "<e2e-mdn@test-operator.mssante.fr>",
                        {"Disposition-Notification-To": SENDER})
    client = daemon.imap()
    try:
        client.select("INBOX")
        _, data = client.uid("SEARCH", "HEADER", "Message-ID", "e2e-mdn")
        uid = data[0].split()[-1]
        client.uid("FETCH", uid, "(BODY[])")
    finally:
        client.logout()
    got = peer.wait_for_mail("dr.martin", before + 1)
    mdn = [email.message_from_bytes(g) for g in got if b"disposition-notification" in g]
    assert len(mdn) == 1 and "e2e-mdn" in mdn[0].get_payload()[1].as_string()


def test_queue_survives_sigkill_exactly_once(stack: tuple[Daemon, PostfixPeer]) -> None:
    daemon, peer = stack
    professional_writes(daemon, peer, "Suivi", "<e2e-kill@test-operator.mssante.fr>")
    before = len(peer.maildir("dr.martin"))
    peer.stop()  # the professional's server is down
    with daemon.submission() as s:
        for i in range(5):
            raw = patient_message(f"Re: Suivi {i}", "<e2e-kill@test-operator.mssante.fr>")
            assert s.sendmail(PATIENT, [SENDER], raw) == {}  # acknowledged: must arrive
    time.sleep(1.5)  # at least one failed attempt recorded
    daemon.kill()
    peer.start()
    daemon.start()
    got = peer.wait_for_mail("dr.martin", before + 5, timeout=60)
    time.sleep(2)  # anything sent twice would show up now
    got = peer.maildir("dr.martin")
    suivi = [s for s in subjects(got) if s.startswith("Re: Suivi ")]
    assert sorted(suivi) == [f"Re: Suivi {i}" for i in range(5)]
