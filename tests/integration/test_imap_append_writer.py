"""APPEND and FETCH against the store's writer (issue 12 §3): an APPEND into the
session's own selected folder claims its \\Recent in the APPEND's transaction (no
second writer job when it is announced), and the read audits of several sessions
join one writer job instead of one each, all of them committed."""
from __future__ import annotations

import asyncio
import imaplib
import threading
from typing import Any

from tests.integration.conftest import INS_ACTIVE, RunningDaemon, message


def _untagged(c: imaplib.IMAP4, name: str) -> list[bytes]:
    return [x for x in c.untagged_responses.pop(name, []) if x is not None]


def _count_claim_jobs(relay: RunningDaemon) -> list[int]:
    """Count the \\Recent claims that go to the writer as jobs of their own."""
    ops: Any = relay.store.recent_ops
    calls: list[int] = []
    original = ops._claim

    async def counted(folder_id: int, below_uid: int, uidvalidity: int) -> int:
        calls.append(below_uid)
        return await original(folder_id, below_uid, uidvalidity)

    ops._claim = counted
    return calls


def test_append_into_the_selected_folder_claims_recent_in_its_own_job(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="avant"))
    a, b = relay.imap(), relay.imap()
    assert a.select("INBOX")[0] == "OK" and _untagged(a, "RECENT") == [b"1"]
    assert b.select("INBOX")[0] == "OK" and _untagged(b, "RECENT") == [b"0"]
    claims = _count_claim_jobs(relay)
    assert a.append("INBOX", None, None, message(subject="un"))[0] == "OK"
    assert a.append("INBOX", None, None, message(subject="deux"))[0] == "OK"
    assert a.noop()[0] == "OK"
    assert _untagged(a, "EXISTS")[-1] == b"3" and _untagged(a, "RECENT")[-1] == b"3"
    typ, data = a.fetch("1:3", "(FLAGS)")
    assert typ == "OK" and all(b"\\Recent" in line for line in data), data
    assert a.search(None, "RECENT")[1] == [b"1 2 3"]
    # b, told of them after a claimed them, gets none, and asks the writer nothing either
    assert b.noop()[0] == "OK"
    assert _untagged(b, "EXISTS")[-1] == b"3" and _untagged(b, "RECENT")[-1] == b"0"
    assert b.search(None, "RECENT")[1] == [b""]
    assert claims == []
    # EXAMINE claims nothing, so its APPEND leaves them for the next SELECT
    assert b.select("INBOX", readonly=True)[0] == "OK"
    assert b.append("INBOX", None, None, message(subject="trois"))[0] == "OK"
    assert b.noop()[0] == "OK"
    c = relay.imap()
    typ, data = c.status("INBOX", "(RECENT)")
    assert typ == "OK" and b"RECENT 1" in data[0], data
    # a is told of it first: a claim of its own (not an APPEND's), which a gets
    assert a.noop()[0] == "OK"
    assert _untagged(a, "RECENT")[-1] == b"4" and len(claims) == 1
    for x in (a, b, c):
        x.logout()


def test_multiappend_into_the_selected_folder_gets_recent(relay: RunningDaemon) -> None:
    a = relay.imap()
    assert a.select("INBOX")[0] == "OK"
    claims = _count_claim_jobs(relay)
    one, two = message(subject="un"), message(subject="deux")
    typ, data = a._simple_command(  # type: ignore[attr-defined]
        "APPEND", "INBOX", f"{{{len(one)}+}}\r\n".encode() + one + f" {{{len(two)}+}}\r\n".encode() + two)
    assert typ == "OK", data
    assert a.noop()[0] == "OK"
    assert _untagged(a, "EXISTS")[-1] == b"2" and _untagged(a, "RECENT")[-1] == b"2"
    assert claims == []
    a.logout()


def test_read_audits_of_several_sessions_share_writer_jobs_and_all_commit(relay: RunningDaemon) -> None:
    for i in range(3):
        relay.deliver(message(subject=f"m{i}"))
    sessions, fetches = 6, 5
    clients = [relay.imap() for _ in range(sessions)]
    for c in clients:
        assert c.select("INBOX")[0] == "OK"
    audits: Any = relay.daemon.imap.audits  # type: ignore[union-attr]
    jobs_before = audits.jobs

    def reader(c: imaplib.IMAP4) -> None:
        for _ in range(fetches):
            assert c.fetch("1:3", "(BODY.PEEK[])")[0] == "OK"

    threads = [threading.Thread(target=reader, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    relay.call(audits.flush())
    mbox = relay.call(relay.store.get_mailbox(INS_ACTIVE))

    async def reads() -> int:
        return len([e for e in await relay.store.audit_events(mbox.id) if e.action == "message.read"])

    assert relay.call(reads()) == sessions * fetches  # every read committed, none lost
    assert audits.jobs - jobs_before <= sessions * fetches  # never more than one job each
    for c in clients:
        c.logout()


def test_read_audits_join_one_job_when_queued_together(relay: RunningDaemon) -> None:
    """Rows queued while no job is in flight leave together, in one job."""
    mbox = relay.call(relay.store.get_mailbox(INS_ACTIVE))
    audits: Any = relay.daemon.imap.audits  # type: ignore[union-attr]

    async def burst() -> int:
        before = audits.jobs
        for i in range(50):
            await audits.add(mbox.id, "patient", "message.read", f"INBOX: {i} message(s)", "127.0.0.1")
        await audits.flush()
        await asyncio.sleep(0)
        return audits.jobs - before

    assert relay.call(burst()) == 1

    async def reads() -> list[str]:
        return [e.detail for e in await relay.store.audit_events(mbox.id) if e.action == "message.read"]

    got = relay.call(reads())
    assert sorted(got) == sorted(f"INBOX: {i} message(s)" for i in range(50))
