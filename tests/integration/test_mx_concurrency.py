"""Concurrent deliveries to one mailbox: no "database is locked", no lost message."""
from __future__ import annotations

import threading

from tests.integration.conftest import INS_ACTIVE, SENDER, RunningDaemon, message

SENDERS = 20
PER_SENDER = 3


def test_twenty_concurrent_senders_one_mailbox(relay: RunningDaemon) -> None:
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(SENDERS)

    def sender(n: int) -> None:
        try:
            with relay.smtp() as s:
                start.wait(30)
                for i in range(PER_SENDER):
                    s.mail(SENDER)
                    s.rcpt(f"{INS_ACTIVE}@patient.mssante.fr")
                    code, _ = s.data(message(subject=f"sender {n} message {i}"))
                    with lock:
                        results.append((n, code))
        except BaseException as e:  # reported below with the others
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(results) == SENDERS * PER_SENDER
    assert all(code == 250 for _, code in results)
    msgs = relay.call(relay.store.messages(INS_ACTIVE))
    assert [m.uid for m in msgs] == list(range(1, SENDERS * PER_SENDER + 1))
    subjects = {raw.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0] for raw in relay.inbox(INS_ACTIVE)}
    assert len(subjects) == SENDERS * PER_SENDER
    # group commit did group: fewer transactions than messages
    writer = relay.store.writer
    assert writer.jobs >= SENDERS * PER_SENDER
