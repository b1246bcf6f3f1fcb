"""imap.processes = 2 on a real daemon: a worker process serves IMAP beside the daemon's
own front over the same SQLite store; each hears the other's changes; a worker that
dies is started again; the daemon's stop ends its workers (relay/daemon/imapworkers.py)."""
from __future__ import annotations

import imaplib
import os
import signal
import time

import pytest

from tests.integration.conftest import RunningDaemon, message
from tests.procsock import serving_pid


def workers(rd: RunningDaemon) -> list[int]:
    assert rd.daemon.imap_workers is not None
    return rd.daemon.imap_workers.pids


def sessions_in_both(rd: RunningDaemon) -> tuple[dict[int, imaplib.IMAP4_SSL], list[imaplib.IMAP4_SSL]]:
    """A logged-in session served by each process (the kernel spreads connections by a
    hash of their addresses: a few tries), and the others opened on the way."""
    pids = [os.getpid(), *workers(rd)]
    found: dict[int, imaplib.IMAP4_SSL] = {}
    extra: list[imaplib.IMAP4_SSL] = []
    for _ in range(40):
        c = rd.imap()
        pid = serving_pid(rd.imap_ports[1], c.sock.getsockname()[1], pids)
        assert pid is not None
        if pid in found:
            extra.append(c)
        else:
            found[pid] = c
        if len(found) == len(pids):
            return found, extra
    raise AssertionError(f"40 connections, served by {sorted(found)} of {pids}")


def until_untagged(c: imaplib.IMAP4_SSL, name: str, timeout: float = 10.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c.noop()
        got = c.untagged_responses.pop(name, None)
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"no untagged {name}")


def test_each_process_serves_and_hears_the_others_changes(relay_two_processes: RunningDaemon) -> None:
    (w,) = workers(relay_two_processes)
    by_pid, extra = sessions_in_both(relay_two_processes)
    ours, theirs = by_pid[os.getpid()], by_pid[w]
    for c in (ours, theirs):
        c.select("INBOX")
        c.untagged_responses.clear()
    # an APPEND in the worker: the daemon's session is told
    assert theirs.append("INBOX", None, None, message(subject="de l'autre processus"))[0] == "OK"
    assert until_untagged(ours, "EXISTS") == [b"1"]
    # a delivery through the MX (the daemon's writer): the worker's session is told
    relay_two_processes.deliver(message(subject="par le MX"))
    assert b"2" in until_untagged(theirs, "EXISTS")
    # flags both ways
    assert ours.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    assert any(b"\\Flagged" in f for f in until_untagged(theirs, "FETCH"))
    assert theirs.store("2", "+FLAGS", "(\\Seen)")[0] == "OK"
    assert any(b"\\Seen" in f for f in until_untagged(ours, "FETCH"))
    # an EXPUNGE in the worker
    theirs.store("1", "+FLAGS.SILENT", "(\\Deleted)")
    assert theirs.expunge()[0] == "OK"
    assert until_untagged(ours, "EXPUNGE") == [b"1"]
    # both wrote the one store: the messages are there once, with their UIDs in order
    typ, data = ours.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK" and len([d for d in data if d]) == 1 and b"UID 2 " in data[0]
    for c in (ours, theirs, *extra):
        c.logout()


def test_a_worker_that_dies_is_started_again_and_the_stop_ends_it(relay_two_processes: RunningDaemon) -> None:
    (first,) = workers(relay_two_processes)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and workers(relay_two_processes) in ([], [first]):
        time.sleep(0.1)
    (second,) = workers(relay_two_processes)
    assert second != first
    # the new worker serves (once it listens: a few tries)
    deadline = time.monotonic() + 20
    served = False
    while not served and time.monotonic() < deadline:
        try:
            by_pid, extra = sessions_in_both(relay_two_processes)
        except AssertionError:
            time.sleep(0.2)
            continue
        served = True
        for c in (*by_pid.values(), *extra):
            c.logout()
    assert served
    relay_two_processes.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)  # reaped: gone
