"""Login throttling through real clients (imaplib, smtplib) bound to different loopback
addresses: a stranger's guesses never lock the owner out, concurrent correct logins all
succeed, fifty sessions from one address check no more passwords than the budget, and
AUTH refuses another patient's authorization identity (issue 10 §1, §6, §10)."""
from __future__ import annotations

import base64
import imaplib
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy.exc import OperationalError

import relay.auth.login as auth_module
from policy.throttle import Budget
from tests.integration.conftest import INS_ACTIVE, INS_PENDING, PASSWORD, RunningDaemon

OWNER, STRANGER, ATTACKER = "127.0.0.1", "127.0.0.2", "127.0.0.3"
ADDRESS = f"{INS_ACTIVE}@patient.mssante.fr"


def ins(n: int) -> str:
    """A well-formed INS with no mailbox."""
    base = 1800175123000 + n
    return f"{base}{97 - base % 97:02d}"


def start(instance: Path, **auth: float) -> RunningDaemon:
    """The daemon with these [auth] values (the rest as `init` writes them)."""
    cfg = instance / "relay.toml"
    text = cfg.read_text()
    for key, value in auth.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, key
    cfg.write_text(text)
    return RunningDaemon(cfg).start()


@pytest.fixture
def daemons() -> Iterator[list[RunningDaemon]]:
    started: list[RunningDaemon] = []
    yield started
    for rd in started:
        rd.stop()


class SourcedIMAP(imaplib.IMAP4_SSL):
    """imaplib over implicit TLS from a chosen loopback address."""

    def __init__(self, rd: RunningDaemon, source: str):
        self.source = source
        super().__init__("127.0.0.1", rd.imap_ports[1], timeout=60,
                         ssl_context=ssl.create_default_context(cafile=str(rd.pki("ca.pem"))))

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def imap_login(client: imaplib.IMAP4, login: str, password: str) -> str:
    """"OK", or the response code of the NO (AUTHENTICATIONFAILED, UNAVAILABLE...)."""
    try:
        return client.login(login, password)[0]
    except imaplib.IMAP4.error as e:
        m = re.search(r"\[([A-Z-]+)\]", str(e))
        return m.group(1) if m else str(e)


def submission(rd: RunningDaemon, source: str = OWNER) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", rd.daemon.submission_ports[0], local_hostname="patient-laptop", timeout=60,
                     source_address=(source, 0))
    s.starttls(context=ssl.create_default_context(cafile=str(rd.pki("ca.pem"))))
    s.ehlo()
    return s


@pytest.fixture
def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every argon2 verification the daemon really performs (relay.auth.login._verify)."""
    calls: list[int] = []
    real = auth_module._verify

    def counting(hashed: str, password: str) -> bool:
        calls.append(1)  # list.append is atomic: the hashing threads may call at once
        return real(hashed, password)

    monkeypatch.setattr(auth_module, "_verify", counting)
    return calls


def test_a_strangers_thousand_guesses_do_not_stop_the_owner(instance: Path, daemons: list[RunningDaemon],
                                                           counted_checks: list[int]) -> None:
    rd = start(instance, first_delay=0.2, max_delay=1, failure_reply_delay=0)
    daemons.append(rd)
    answers: list[str] = []

    def spray(worker: int) -> None:
        c = SourcedIMAP(rd, STRANGER)
        for i in range(250):
            answers.append(imap_login(c, INS_ACTIVE, f"guess-{worker}-{i}"))
        c.shutdown()

    owner: list[str] = []
    with ThreadPoolExecutor(4) as pool:
        sprays = [pool.submit(spray, w) for w in range(4)]
        while "UNAVAILABLE" not in answers and not all(f.done() for f in sprays):
            time.sleep(0.01)  # the stranger is past the account's free failures...
        while not all(f.done() for f in sprays):  # ...and the owner logs in meanwhile
            c = SourcedIMAP(rd, OWNER)
            owner.append(imap_login(c, ADDRESS, PASSWORD))
            c.logout()
        for f in sprays:
            f.result()
    c = SourcedIMAP(rd, OWNER)
    owner.append(imap_login(c, ADDRESS, PASSWORD))
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    assert len(answers) == 1000 and "OK" not in answers
    assert answers.count("UNAVAILABLE") > 900, answers[:20]
    assert owner and set(owner) == {"OK"}, owner
    assert len(counted_checks) < 100 + len(owner)  # the refused guesses cost no argon2


def test_twenty_concurrent_correct_logins_all_succeed(instance: Path, daemons: list[RunningDaemon]) -> None:
    rd = start(instance)
    daemons.append(rd)
    # a cheaper argon2 than production's (0.5 s a check on this machine): the test is
    # about admission, and 23 checks in a row on one account would take 12 s
    rd.call(rd.store.set_password(INS_ACTIVE, PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD)))
    barrier = threading.Barrier(23)

    def imap_one() -> str:
        c = SourcedIMAP(rd, OWNER)
        barrier.wait(60)
        answer = imap_login(c, ADDRESS, PASSWORD)
        barrier.wait(60)  # all 20 sessions open at once (imap.max_sessions_per_account)
        c.logout()
        return answer

    def submission_one() -> int:
        with submission(rd) as s:
            barrier.wait(60)
            try:
                code = s.login(ADDRESS, PASSWORD)[0]
            except smtplib.SMTPAuthenticationError as e:
                code = e.smtp_code
            barrier.wait(60)
            return code

    with ThreadPoolExecutor(23) as pool:
        imap = [pool.submit(imap_one) for _ in range(20)]
        smtp = [pool.submit(submission_one) for _ in range(3)]
        assert [f.result() for f in imap] == ["OK"] * 20
        assert [f.result() for f in smtp] == [235] * 3


def test_fifty_sessions_from_one_address_stay_within_the_budget(instance: Path, daemons: list[RunningDaemon],
                                                                counted_checks: list[int]) -> None:
    rd = start(instance, failure_reply_delay=0)  # the production budgets: 5 and 20 free, 1 s doubling
    daemons.append(rd)
    clients = [SourcedIMAP(rd, ATTACKER) for _ in range(50)]
    began = time.monotonic()
    deadline = began + 8

    def guess(n: int) -> list[str]:
        target = INS_ACTIVE if n % 2 else ins(n + 1)  # half on the patient, half sprayed
        out = []
        while time.monotonic() < deadline:
            out.append(imap_login(clients[n], target, f"guess-{n}-{len(out)}"))
            time.sleep(0.02)
        return out

    with ThreadPoolExecutor(50) as pool:
        answers = [a for f in [pool.submit(guess, n) for n in range(50)] for a in f.result()]
    elapsed = time.monotonic() - began
    for c in clients:
        c.shutdown()
    # the address's 20 free failures, then one check per delay (1, 2, 4 ... s) that fits
    budget, extra, spent = Budget(20, 1.0, 900.0, 3600.0), 0, 0.0
    while spent + budget.delay(extra + 1) <= elapsed:
        extra += 1
        spent += budget.delay(extra)
    assert "OK" not in answers and answers.count("AUTHENTICATIONFAILED") <= 20 + extra
    assert 20 <= len(counted_checks) <= 20 + extra, (len(counted_checks), extra, elapsed)
    c = SourcedIMAP(rd, OWNER)  # the owner, elsewhere, is not concerned
    assert imap_login(c, ADDRESS, PASSWORD) == "OK"
    c.logout()


def test_submission_refuses_another_patients_authorization_identity(relay: RunningDaemon) -> None:
    def plain(authzid: str) -> Any:
        return lambda challenge=None: f"{authzid}\0{ADDRESS}\0{PASSWORD}"

    with submission(relay) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.auth("PLAIN", plain(f"{INS_PENDING}@patient.mssante.fr"))
        assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8 ")
        assert b"Authorization identity not permitted" in e.value.smtp_error
        with pytest.raises(smtplib.SMTPSenderRefused):  # still not authenticated
            s.sendmail(ADDRESS, ["dr.martin@test-operator.mssante.fr"], b"Subject: x\r\n\r\nx\r\n")
    with submission(relay) as s:  # the own identity, in another form, is allowed
        assert s.auth("PLAIN", plain(INS_ACTIVE.lower()))[0] == 235
    with submission(relay) as s:  # without an initial response (RFC 4954 §4)
        code, _ = s.docmd("AUTH", "PLAIN")
        assert code == 334
        code, text = s.docmd(base64.b64encode(f"{INS_PENDING}\0{INS_ACTIVE}\0{PASSWORD}".encode()).decode())
        assert code == 535 and text.startswith(b"5.7.8 ")


def test_a_login_that_cannot_record_itself_still_logs_in(relay: RunningDaemon,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    async def disk_full(*a: Any, **kw: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("database or disk is full"))

    monkeypatch.setattr(relay.store, "record_login", disk_full)
    c = SourcedIMAP(relay, OWNER)
    assert imap_login(c, ADDRESS, PASSWORD) == "OK"
    assert c.select("INBOX")[0] == "OK"  # reading goes on while the disk is full
    c.logout()
    with submission(relay) as s:
        assert s.login(ADDRESS, PASSWORD)[0] == 235


def test_an_unreadable_store_gives_a_clean_temporary_refusal(relay: RunningDaemon,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*a: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(relay.store, "credentials", broken)
    c = SourcedIMAP(relay, OWNER)
    try:
        c.login(ADDRESS, PASSWORD)
        raise AssertionError("logged in")
    except imaplib.IMAP4.error as e:
        assert "[UNAVAILABLE]" in str(e) and "OperationalError" not in str(e)
    assert c.noop()[0] == "OK"  # the session goes on
    c.logout()
    with submission(relay) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            s.login(ADDRESS, PASSWORD)
        assert err.value.smtp_code == 454 and err.value.smtp_error.startswith(b"4.7.0 ")
        assert b"Error" not in err.value.smtp_error and b"\n" not in err.value.smtp_error
        assert s.noop()[0] == 250


def test_a_cancelled_auth_gets_one_reply(relay: RunningDaemon) -> None:
    """RFC 4954 §4: "*" cancels with 501; aiosmtpd's AUTH LOGIN answered 535 after it too."""
    with submission(relay) as s:
        for mechanism in ("LOGIN", "PLAIN"):
            assert s.docmd("AUTH", mechanism)[0] == 334
            if mechanism == "LOGIN":
                assert s.docmd(base64.b64encode(ADDRESS.encode()).decode())[0] == 334
            assert s.docmd("*")[0] == 501
            assert s.noop()[0] == 250  # no stray reply left in the pipe
        assert s.login(ADDRESS, PASSWORD)[0] == 235
