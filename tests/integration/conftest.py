"""Integration fixtures: a real daemon on loopback (ephemeral port) in its own thread,
driven by real clients (smtplib, raw TLS sockets, swaks)."""
from __future__ import annotations

import asyncio
import imaplib
import shutil
import smtplib
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from certs.pki import _name, cert_pem, issue, key_pem, load_ca, write_private
from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store
from policy.recipients import MailboxState
from relay.core.config import load_config
from relay.daemon.serve import Daemon
from relay.ops.instance import init_instance
from tests.pg import on_postgresql, use_store

OPERATOR_DOMAIN = "test-operator.mssante.fr"
SENDER = f"dr.martin@{OPERATOR_DOMAIN}"
INS_ACTIVE = "279035121518989"
INS_PENDING = "185022A12345682"  # Corsica 2A
INS_OPPOSED = "297122B00100160"
INS_CLOSED = "170017512300135"
INS_UNKNOWN = "160017512300140"
PASSWORD = "correct horse battery staple"
PASSWORD_HASH = PasswordHasher().hash(PASSWORD)



@pytest.fixture(scope="session")
def template_instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated instance (RSA keys are slow) copied for each test that needs one."""
    d = tmp_path_factory.mktemp("template") / "inst"
    init_instance(d)
    cfg = d / "relay.toml"
    cfg.write_text(cfg.read_text().replace('listen = "127.0.0.1:2525"', 'listen = "127.0.0.1:0"')
                   .replace('listen = "127.0.0.1:2143"', 'listen = "127.0.0.1:0"')
                   .replace('listen_tls = "127.0.0.1:2993"', 'listen_tls = "127.0.0.1:0"')
                   .replace('listen = "127.0.0.1:9325"', 'listen = "127.0.0.1:0"')
                   .replace('listen = "127.0.0.1:2587"', 'listen = "127.0.0.1:0"')
                   .replace('listen_tls = "127.0.0.1:2465"', 'listen_tls = "127.0.0.1:0"')
                   .replace('listen = "127.0.0.1:8443"', 'listen = "127.0.0.1:0"')
                   .replace("shutdown_grace = 30", "shutdown_grace = 5")
                   # no one-second pause after each refused login (auth.failure_reply_delay): the
                   # tests count failures and throttling, which do not depend on it; the pause
                   # itself is tested in tests/unit/test_auth.py, test_auth_throttle sets its own
                   .replace("failure_reply_delay = 1\n", "failure_reply_delay = 0\n"))
    # a second certificate of the same CA whose DN is on no list
    ca = load_ca(d / "pki")
    other = issue(ca, _name("mail.other-operator.mssante.fr", "Autre operateur", "000000000000002"),
                  ("mail.other-operator.mssante.fr",), server=False, client=True)
    (d / "pki/other.pem").write_bytes(cert_pem(other.cert))
    write_private(d / "pki/other.key", key_pem(other.key))
    return d


class RunningDaemon:
    def __init__(self, config_path: Path):
        self.config = load_config(config_path)
        self.base = config_path.parent
        self.loop = asyncio.new_event_loop()
        self.daemon = Daemon(self.config)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:  # surfaced by start()
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        await self.daemon.start()
        self._ready.set()
        await self.daemon._stop.wait()
        await self.daemon.stop()

    def start(self) -> "RunningDaemon":
        self.thread.start()
        self._ready.wait(30)
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.daemon.request_stop)
            self.thread.join(30)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    @property
    def store(self) -> Store:
        assert self.daemon.runtime is not None
        return self.daemon.runtime.store

    @property
    def port(self) -> int:
        return self.daemon.mx_port

    def pki(self, name: str) -> Path:
        return self.base / "pki" / name

    def client_context(self, cert: str | None = "operator", tls13: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki("ca.pem")))
        if not tls13:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if cert:
            ctx.load_cert_chain(self.pki(f"{cert}.pem"), self.pki(f"{cert}.key"))
        return ctx

    def smtp(self, cert: str | None = "operator", starttls: bool = True, tls13: bool = True) -> smtplib.SMTP:
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname=f"mail.{OPERATOR_DOMAIN}", timeout=30)
        s.ehlo()
        if starttls:
            s.starttls(context=self.client_context(cert, tls13))
            s.ehlo()
        return s

    def submission(self, ins: str = INS_ACTIVE, login: bool = True) -> smtplib.SMTP:
        """smtplib on the submission port (STARTTLS), logged in as the patient."""
        s = smtplib.SMTP("127.0.0.1", self.daemon.submission_ports[0], local_hostname="patient-laptop", timeout=30)
        s.starttls(context=ssl.create_default_context(cafile=str(self.pki("ca.pem"))))
        s.ehlo()
        if login:
            s.login(f"{ins}@patient.mssante.fr", PASSWORD)
        return s

    @property
    def imap_ports(self) -> tuple[int, int]:
        assert self.daemon.imap is not None
        return self.daemon.imap.ports

    def imap(self, login: bool = True, ins: str = INS_ACTIVE) -> "imaplib.IMAP4_SSL":
        """A logged-in imaplib client over implicit TLS (port 2993's twin)."""
        ctx = ssl.create_default_context(cafile=str(self.pki("ca.pem")))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.imap_ports[1], ssl_context=ctx, timeout=30)
        if login:
            client.login(f"{ins}@patient.mssante.fr", PASSWORD)
        return client

    def deliver(self, raw: bytes, ins: str = INS_ACTIVE) -> None:
        with self.smtp() as s:
            assert s.sendmail(SENDER, [f"{ins}@patient.mssante.fr"], raw) == {}

    def inbox(self, ins: str) -> list[bytes]:
        msgs = self.call(self.store.messages(ins, "INBOX"))
        return [self.call(self.store.fetch_raw(ins, "INBOX", m.uid)) for m in msgs]


def seed_mailboxes(config_path: Path) -> None:
    config = load_config(config_path)

    async def seed() -> None:
        store = await Store.open(config.store_url, MasterKey.load(config.master_key))
        for ins, state in ((INS_ACTIVE, MailboxState.ACTIVE), (INS_PENDING, MailboxState.PENDING),
                           (INS_OPPOSED, MailboxState.OPPOSED), (INS_CLOSED, MailboxState.CLOSED)):
            # every test patient has the same password, so the login tests can try any state
            await store.create_mailbox(ins, state, password_hash=PASSWORD_HASH)
        await store.close()

    asyncio.run(seed())


@pytest.fixture(scope="session")
def seeded_template(template_instance: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """template_instance with its SQLite store migrated and seeded (seed_mailboxes), once:
    each test copies the file instead of running every migration again (about 0.15 s a
    test, 370 tests). Seeded from a thread: Playwright's sync API keeps an event loop
    running in the main thread of the browser tests, where asyncio.run() is refused."""
    d = tmp_path_factory.mktemp("seeded") / "inst"
    shutil.copytree(template_instance, d, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    seeding = threading.Thread(target=seed_mailboxes, args=(d / "relay.toml",))
    seeding.start()
    seeding.join(120)
    assert not seeding.is_alive() and (d / "relay.db").is_file()
    return d


def seeded_instance(d: Path, template_instance: Path, request: pytest.FixtureRequest) -> Path:
    """A copy of the instance with the test mailboxes, in folder d: on SQLite the store
    file seeded once (seeded_template); on PostgreSQL (MSSANTE_TEST_STORE=postgresql) a
    fresh database of tests/pg.py's server, seeded here."""
    shutil.copytree(template_instance, d, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    if on_postgresql():
        use_store(d / "relay.toml", request.getfixturevalue("pg_server").new_database())
        seeding = threading.Thread(target=seed_mailboxes, args=(d / "relay.toml",))
        seeding.start()
        seeding.join(120)
        return d
    seeded: Path = request.getfixturevalue("seeded_template")
    for db in seeded.glob("relay.db*"):  # the file, and its -wal / -shm if any were left
        shutil.copy2(db, d / db.name)
    return d


@pytest.fixture
def instance(template_instance: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    return seeded_instance(tmp_path / "inst", template_instance, request)


@pytest.fixture
def relay(instance: Path) -> Iterator[RunningDaemon]:
    rd = RunningDaemon(instance / "relay.toml").start()
    yield rd
    rd.stop()


@pytest.fixture
def relay_two_processes(instance: Path) -> Iterator[RunningDaemon]:
    """The daemon with imap.processes = 2: its own IMAP front and one worker process
    (relay/daemon/imapworkers.py). SQLite only."""
    if on_postgresql():
        pytest.skip("imap.processes is for the SQLite store")
    cfg = instance / "relay.toml"
    text = cfg.read_text()
    assert text.count("processes = 1\n") == 1
    cfg.write_text(text.replace("processes = 1\n", "processes = 2\n"))
    rd = RunningDaemon(cfg).start()
    yield rd
    rd.stop()


def message(subject: str = "Compte rendu", body: str = "Bonjour,\r\nVoici le compte rendu.\r\n",
            to: str = f"{INS_ACTIVE}@patient.mssante.fr", extra: str = "", message_id: str | None = None,
            sender: str = SENDER) -> bytes:
    message_id = message_id or f"<{abs(hash(subject + body))}@{OPERATOR_DOMAIN}>"
    return (f"From: Dr Martin <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: {message_id}\r\n{extra}"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()
