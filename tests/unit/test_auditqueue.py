"""mailbox_store/auditqueue.py: the read audits waiting for the writer are bounded; when
the writer is behind, `add` waits for room instead of growing the queue, and no row is
lost."""
from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy import Connection

from mailbox_store.auditqueue import ReadAudits
from mailbox_store.store import Store
from policy.recipients import MailboxState

INS = "279035121518989"


async def test_a_full_queue_makes_add_wait_for_the_writer_and_keeps_every_row(store: Store) -> None:
    mbox = await store.create_mailbox(INS, MailboxState.ACTIVE)
    audits = ReadAudits(store.writer, limit=3)
    release = threading.Event()

    def blocker(conn: Connection) -> tuple[Any, list[Any]]:
        release.wait(30)  # the writer is busy: the audit job waits behind this one
        return None, []

    blocked = asyncio.ensure_future(store.writer.submit(blocker))
    await asyncio.sleep(0)
    for i in range(3):  # room for these: add returns without waiting
        await audits.add(mbox.id, "patient", "message.read", f"INBOX: {i}", "127.0.0.1")
    assert audits.held == 3 and audits.waits == 0
    late = [asyncio.ensure_future(audits.add(mbox.id, "patient", "message.read", f"INBOX: {i}", "127.0.0.1"))
            for i in range(3, 5)]
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert not any(t.done() for t in late)  # waiting, not queued beyond the bound
    assert audits.held == 3 and audits.waits == 2
    release.set()
    await blocked
    await asyncio.wait_for(asyncio.gather(*late), 30)
    await audits.flush()
    assert audits.held == 0
    details = sorted(e.detail for e in await store.audit_events(mbox.id) if e.action == "message.read")
    assert details == [f"INBOX: {i}" for i in range(5)]


async def test_rows_in_a_failed_job_free_their_room(store: Store) -> None:
    """A job the store refuses is logged (audit.failed) and its rows stop counting: the
    sessions never wait forever on a writer that refused."""
    audits = ReadAudits(store.writer, limit=2)
    await store.close()  # the writer refuses every job from now on
    await audits.add(1, "patient", "message.read", "INBOX: 1", "127.0.0.1")
    await audits.add(1, "patient", "message.read", "INBOX: 2", "127.0.0.1")
    await asyncio.wait_for(audits.add(1, "patient", "message.read", "INBOX: 3", "127.0.0.1"), 30)
    await audits.flush()
    assert audits.held == 0
