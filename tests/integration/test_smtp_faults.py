"""Issue 10 items 3, 5, 6 and 10b on real sessions: the DATA deadline, the header
limits, storage faults answered in codes (never an exception text), /healthz and the
free-space gauge, and no traceback for a flood of unknown commands.

The store faults here are raised by replacing one store call; the real full disk is
tests/integration/test_store_full.py (root, a tmpfs in a private mount namespace)."""
from __future__ import annotations

import base64
import gc
import json
import logging
import re
import smtplib
import socket
import sqlite3
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

import relay.outbound.outgoing_mail as submission_module
from relay.smtp.mx import MxHandler
from tests.integration.conftest import INS_ACTIVE, PASSWORD, SENDER, RunningDaemon, message
from tests.integration.test_conversations import pro_writes, reply

RCPT = f"{INS_ACTIVE}@patient.mssante.fr"
# what an SMTP reply may be: code, enhanced code, printable text; never an exception
CLEAN_REPLY = re.compile(r"^[2-5]\d\d [245]\.\d{1,3}\.\d{1,3} [\x20-\x7e]+$")
INTERNALS = ("Error:", "OperationalError", "sqlite", "sqlalche", "Traceback", "INSERT", "secret")


def configured(instance: Path, section: str, **keys: Any) -> RunningDaemon:
    """The daemon with some keys of one relay.toml section changed."""
    cfg = instance / "relay.toml"
    text = cfg.read_text()
    start = text.index(f"\n[{section}]\n")
    end = text.find("\n[", start + 1)
    body = text[start:end]
    for key, value in keys.items():
        body, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", body)
        assert n == 1, key
    cfg.write_text(text[:start] + body + text[end:])
    return RunningDaemon(cfg).start()


@pytest.fixture
def strict(instance: Path) -> Iterator[RunningDaemon]:
    rd = configured(instance, "mx", data_timeout=2, max_sessions_per_ip=1)
    yield rd
    rd.stop()


def full_error() -> OperationalError:
    """What SQLAlchemy raises when SQLite meets a full disk (as the issue saw it)."""
    return OperationalError("INSERT INTO messages ...", {}, sqlite3.OperationalError("database or disk is full"))


def io_error() -> OperationalError:
    return OperationalError("INSERT INTO messages ...", {}, sqlite3.OperationalError("disk I/O error"))


def assert_clean(code: int, text: bytes) -> None:
    line = f"{code} {text.decode('ascii')}"
    assert CLEAN_REPLY.match(line), line
    assert not any(word in line for word in INTERNALS), line


def trickle_until_answer(sock: ssl.SSLSocket, give_up: float = 60) -> bytes:
    """Slowloris inside DATA: one byte every 0.3 s, far under the idle timeout."""
    sock.settimeout(0.3)
    deadline = time.monotonic() + give_up
    while time.monotonic() < deadline:
        sock.sendall(b"x")
        try:
            data = sock.recv(4096)
        except socket.timeout:
            continue
        return data
    raise AssertionError("the server never answered the trickling sender")


def closed(sock: ssl.SSLSocket) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(4096) == b""
    except (ConnectionError, ssl.SSLError):
        return True


# --- item 3: a deadline on the whole DATA transfer --------------------------------------------------

def test_slow_data_sender_gets_451_442_and_its_slot_is_freed(strict: RunningDaemon) -> None:
    s = strict.smtp()
    s.mail(SENDER)
    s.rcpt(RCPT)
    assert s.putcmd("DATA") is None and s.getreply()[0] == 354
    answer = trickle_until_answer(s.sock)
    assert answer.startswith(b"451 4.4.2 "), answer
    assert closed(s.sock)
    s.close()
    # max_sessions_per_ip = 1: a new session is possible only once the slot is freed
    for _ in range(100):
        try:
            strict.deliver(message(subject="after the slow one"))
            break
        except smtplib.SMTPConnectError as e:  # 421 4.7.0 until the server saw the close
            assert e.smtp_code == 421
            time.sleep(0.1)
    assert len(strict.inbox(INS_ACTIVE)) == 1


def test_slow_data_on_submission_gets_451_442(strict: RunningDaemon) -> None:
    pro_writes(strict)
    s = strict.submission()
    s.mail(RCPT)
    s.rcpt(SENDER)
    assert s.putcmd("DATA") is None and s.getreply()[0] == 354
    answer = trickle_until_answer(s.sock)
    assert answer.startswith(b"451 4.4.2 "), answer
    assert closed(s.sock)


# --- item 5: header limits, MX and submission ---------------------------------------------------------

def big_header_line() -> bytes:
    return message(extra="X-Big: " + "x" * (5 * 1024 * 1024) + "\r\n")


def many_fields() -> bytes:
    return message(extra="".join(f"X-F{i}: v\r\n" for i in range(100_000)))


def test_header_limits_on_the_mx(relay: RunningDaemon) -> None:
    with relay.smtp() as s:
        for raw, code, status in ((big_header_line(), 552, b"5.3.4"), (many_fields(), 554, b"5.6.0")):
            with pytest.raises(smtplib.SMTPDataError) as exc:
                s.sendmail(SENDER, [RCPT], raw)
            assert (exc.value.smtp_code, exc.value.smtp_error[:5]) == (code, status)
        # the session goes on, and a message at the limits is accepted
        fields = message(extra="".join(f"X-F{i}: v\r\n" for i in range(990)))
        assert s.sendmail(SENDER, [RCPT], fields) == {}
    assert len(relay.inbox(INS_ACTIVE)) == 1


def test_header_limits_on_submission(relay: RunningDaemon) -> None:
    pro_writes(relay)
    with relay.submission() as s:
        for extra, code, status in (("X-Big: " + "x" * (5 * 1024 * 1024), 552, b"5.3.4"),
                                    ("".join(f"X-F{i}: v\r\n" for i in range(100_000)).rstrip(), 554, b"5.6.0")):
            raw = reply().replace(b"\r\nSubject:", f"\r\n{extra}\r\nSubject:".encode(), 1)
            with pytest.raises(smtplib.SMTPDataError) as exc:
                s.sendmail(RCPT, [SENDER], raw)
            assert (exc.value.smtp_code, exc.value.smtp_error[:5]) == (code, status)
        assert s.sendmail(RCPT, [SENDER], reply()) == {}


# --- item 6: storage faults answered in codes ---------------------------------------------------------

@pytest.mark.parametrize("error, expected", [(full_error, (452, b"4.3.1")), (io_error, (451, b"4.3.0"))])
def test_mx_data_when_the_store_cannot_write(relay: RunningDaemon, monkeypatch: pytest.MonkeyPatch,
                                             error: Any, expected: tuple[int, bytes]) -> None:
    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise error()

    monkeypatch.setattr(relay.store, "deliver", failing)
    with relay.smtp() as s:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            s.sendmail(SENDER, [RCPT], message())
        assert (exc.value.smtp_code, exc.value.smtp_error[:5]) == expected
        assert_clean(exc.value.smtp_code, exc.value.smtp_error)


def test_submission_data_when_the_store_is_full(relay: RunningDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    pro_writes(relay)

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise full_error()

    monkeypatch.setattr(submission_module, "queue_outgoing", failing)
    with relay.submission() as s:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            s.sendmail(RCPT, [SENDER], reply())
        assert (exc.value.smtp_code, exc.value.smtp_error[:5]) == (452, b"4.3.1")


def test_submission_auth_never_shows_the_store_error(relay: RunningDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 10 item 7: "500 5.5.2 Error: (OperationalError) (sqlite3.OperationalError)
    # database or disk is full\n(Background on this error at: https://sqlalche.me/e/...)"
    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise full_error()

    assert relay.daemon.imap is not None
    monkeypatch.setattr(relay.daemon.imap.auth, "login", failing)
    with relay.submission(login=False) as s:
        token = base64.b64encode(f"\0{RCPT}\0{PASSWORD}".encode()).decode()
        code, text = s.docmd("AUTH", f"PLAIN {token}")
        assert (code, text[:5]) == (454, b"4.7.0"), (code, text)
        assert_clean(code, text)
        assert s.noop()[0] == 250  # still in step


def test_unexpected_exception_is_a_clean_451(relay: RunningDaemon, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    async def boom(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("secret internals\r\nand a second line")

    monkeypatch.setattr(MxHandler, "handle_MAIL", boom)
    with relay.smtp() as s:
        code, text = s.docmd("MAIL", f"FROM:<{SENDER}>")
        assert (code, text[:5]) == (451, b"4.3.0"), (code, text)
        assert_clean(code, text)
        assert s.noop()[0] == 250
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_under_min_free_bytes_mail_is_refused_and_healthz_fails(instance: Path) -> None:
    rd = configured(instance, "store", min_free_bytes=10**18)
    try:
        with rd.smtp() as s:
            code, text = s.mail(SENDER)
            assert (code, text[:5]) == (452, b"4.3.1"), (code, text)
        with rd.submission() as s:
            code, text = s.mail(RCPT)
            assert (code, text[:5]) == (452, b"4.3.1"), (code, text)
        status, body = admin_get(rd, "/healthz")
        health = json.loads(body)
        assert status == 503 and health["checks"]["store_space"]["ok"] is False
        free = health["checks"]["store_space"]["free_bytes"]
        assert free > 0 and health["checks"]["store_space"]["min_free_bytes"] == 10**18
        metrics = admin_get(rd, "/metrics")[1].decode()
        gauge = re.search(r"^mssante_store_free_bytes (\S+)$", metrics, re.M)
        assert gauge is not None and float(gauge.group(1)) > 0
        # reading is untouched
        c = rd.imap()
        assert c.select("INBOX")[0] == "OK"
        c.logout()
    finally:
        rd.stop()


def admin_get(rd: RunningDaemon, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{rd.daemon.admin_port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.parametrize("error, code", [(full_error, "LIMIT"), (io_error, "SERVERBUG")])
def test_imap_store_failure_is_a_tagged_no_and_reading_goes_on(relay: RunningDaemon,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               error: Any, code: str) -> None:
    relay.deliver(message(subject="kept"))

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise error()

    monkeypatch.setattr(relay.store, "create_folder", failing)
    c = relay.imap()
    try:
        typ, data = c.create("Nouveau")
        assert typ == "NO" and data[0].startswith(f"[{code}] ".encode()), data
        assert not any(word.encode() in data[0] for word in INTERNALS)
        assert c.select("INBOX")[0] == "OK"
        typ, fetched = c.fetch("1", "(BODY.PEEK[])")
        assert typ == "OK" and b"Subject: kept" in fetched[0][1]
    finally:
        c.logout()


# --- item 10b: a flood of unknown commands ---------------------------------------------------------

def test_300_unknown_commands_log_no_traceback(relay: RunningDaemon, caplog: pytest.LogCaptureFixture,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.WARNING)
    s = relay.smtp()
    s.sock.sendall(b"FOO\r\n" * 300)  # pipelined, over TLS, as the attacker did
    received = b""
    s.sock.settimeout(10)
    try:
        while chunk := s.sock.recv(65536):
            received += chunk
    except (ConnectionError, ssl.SSLError, socket.timeout):
        pass
    assert b"502 5.5.1 Too many unrecognized commands" in received
    assert all(CLEAN_REPLY.match(line) for line in received.decode().splitlines() if line), received
    s.close()
    with relay.smtp() as again:  # the daemon is fine
        assert again.noop()[0] == 250
    gc.collect()  # a task that died with an exception logs it when collected
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], \
        [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in capfd.readouterr().err
