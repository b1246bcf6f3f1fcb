"""Issue 15 §2 on a real daemon: the MX does not wait behind the password pool nor
behind asyncio's shared default executor, and a global budget bounds the message
bytes all SMTP sessions hold (452 4.3.1)."""
from __future__ import annotations

import asyncio
import smtplib
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    INS_ACTIVE,
    SENDER,
    RunningDaemon,
    message,
    seed_mailboxes,
)

RCPT = f"{INS_ACTIVE}@patient.mssante.fr"


def test_mx_delivers_while_password_pool_and_default_executor_are_saturated(relay: RunningDaemon) -> None:
    """A login spray fills the argon2 pool; anything else filling asyncio's default
    executor (it served argon2, DKIM and MIME inspection alike before) must not hold
    the MX either: a large signed message is inspected, verified and sealed in the
    daemon's own pools."""
    release = threading.Event()
    assert relay.daemon.imap is not None
    auth = relay.daemon.imap.auth

    async def saturate() -> list[Any]:
        loop = asyncio.get_running_loop()
        # slow "hashes": every argon2 thread and every default-executor thread busy, more queued
        return [loop.run_in_executor(auth._pool, release.wait, 60) for _ in range(8)] + \
               [loop.run_in_executor(None, release.wait, 60) for _ in range(64)]

    held = relay.call(saturate())
    try:
        body = "ligne de compte rendu\r\n" * 20_000  # ~460 KB: inspected off the event loop
        raw = message(subject="Sous charge", body=body,
                      extra="DKIM-Signature: v=1; a=rsa-sha256; d=test-operator.mssante.fr; s=x; "
                            "h=from; bh=AAAA; b=AAAA\r\n")
        with relay.smtp() as s:
            assert s.sendmail(SENDER, [RCPT], raw) == {}
        stored = relay.inbox(INS_ACTIVE)
        assert len(stored) == 1 and stored[0].endswith(raw)
        assert not any(f.done() for f in held)  # the pools were still full all along
    finally:
        release.set()


@pytest.fixture
def tight_relay(template_instance: Path, tmp_path: Path) -> Any:
    import shutil
    d = tmp_path / "inst"
    shutil.copytree(template_instance, d, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    cfg = d / "relay.toml"
    cfg.write_text(cfg.read_text().replace("max_bytes_in_flight = 268435456", "max_bytes_in_flight = 300000")
                   .replace("bytes_wait = 30", "bytes_wait = 1"))
    seed_mailboxes(cfg)
    rd = RunningDaemon(cfg).start()
    yield rd
    rd.stop()


def _open_data(relay: RunningDaemon, size: int) -> smtplib.SMTP:
    s = relay.smtp()
    s.mail(SENDER, [f"SIZE={size}"])
    s.rcpt(RCPT)
    return s


def test_new_data_waits_for_budget_then_452(tight_relay: RunningDaemon) -> None:
    holder = _open_data(tight_relay, 200_000)  # reserves 200,000 + one chunk of 300,000
    assert holder.docmd("DATA")[0] == 354
    late = _open_data(tight_relay, 50_000)
    code, text = late.docmd("DATA")
    assert code == 452 and text.startswith(b"4.3.1 Trop de messages en cours de reception")
    # the holder's message goes through, its budget is returned, the next DATA passes
    raw = message(subject="premier", body="x" * 150_000 + "\r\n")
    holder.send(raw + b"\r\n.\r\n")
    assert holder.getreply()[0] == 250
    late.rset()
    assert late.sendmail(SENDER, [RCPT], message(subject="second")) == {}
    holder.quit()
    late.quit()
    subjects = [m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in tight_relay.inbox(INS_ACTIVE)]
    assert subjects == [b"premier", b"second"]


def test_data_past_its_declared_size_without_budget_is_refused_after_the_dot(tight_relay: RunningDaemon) -> None:
    holder = _open_data(tight_relay, 150_000)
    assert holder.docmd("DATA")[0] == 354
    liar = _open_data(tight_relay, 100)  # declares 100 bytes, sends 200 KB
    assert liar.docmd("DATA")[0] == 354
    liar.send(message(subject="menteur", body="y" * 200_000 + "\r\n") + b"\r\n.\r\n")
    code, text = liar.getreply()
    assert code == 452 and b"4.3.1" in text
    assert liar.noop()[0] == 250  # the stream stayed in step
    holder.send(message(subject="honnete") + b"\r\n.\r\n")
    assert holder.getreply()[0] == 250
    for s in (holder, liar):
        s.quit()
    subjects = [m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in tight_relay.inbox(INS_ACTIVE)]
    assert subjects == [b"honnete"]
    assert tight_relay.daemon.runtime is not None and tight_relay.daemon.runtime.budget is not None
    assert tight_relay.daemon.runtime.budget.used == 0


@pytest.fixture
def process_relay(template_instance: Path, tmp_path: Path) -> Any:
    import shutil
    d = tmp_path / "inst"
    shutil.copytree(template_instance, d, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    cfg = d / "relay.toml"
    cfg.write_text(cfg.read_text().replace('parse_mode = "threads"', 'parse_mode = "processes"'))
    seed_mailboxes(cfg)
    rd = RunningDaemon(cfg).start()
    yield rd
    rd.stop()


def test_parse_in_processes_and_a_dead_worker_gives_451(process_relay: RunningDaemon) -> None:
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    relay = process_relay
    relay.deliver(message(subject="par un processus"))
    rt = relay.daemon.runtime
    assert rt is not None and rt.pools is not None

    async def break_pool() -> None:  # workers that die as they start
        rt.pools.parse.shutdown(wait=False)  # type: ignore[union-attr]
        rt.pools.parse = ProcessPoolExecutor(  # type: ignore[union-attr]
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=os._exit, initargs=(3,))

    relay.call(break_pool())
    with relay.smtp() as s:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail(SENDER, [RCPT], message(subject="perdu"))
        assert refused.value.smtp_code == 451
        # the same session goes on, on a new pool
        assert s.sendmail(SENDER, [RCPT], message(subject="apres")) == {}
    subjects = [m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for m in relay.inbox(INS_ACTIVE)]
    assert subjects == [b"par un processus", b"apres"]
