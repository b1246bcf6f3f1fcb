"""Issue 12 §3: the CPU an IMAP command costs the event loop. Under imaptest's stress a
third of the loop's GIL samples were thread wake-ups (a worker hop's submit and
notify): small FETCH batches are rendered on the loop, an APPEND into the selected
folder reads no UIDVALIDITY first, the command metric's child is looked up once.
Each test counts the hops the old code made and the answers stay the same."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from mailbox_store.store import Store
from policy.recipients import MailboxState
from relay.imap import fetch as fetchmod
from relay.imap import metrics
from relay.imap.fetchcache import DerivedCache
from relay.imap.idlefan import FolderFan
from relay.imap.parser import Parser
from relay.imap.session import AUTH, INLINE_RENDER_BYTES, Session
from tests.unit.imap.peer import until_tagged

INS = "279035121518989"


def msg(n: int, body_size: int = 100) -> bytes:
    body = (b"ligne de compte rendu %d\r\n" % n) * (body_size // 25 + 1)
    return (f"From: Dr Martin <dr.martin@test-operator.mssante.fr>\r\nTo: <{INS}@patient.mssante.fr>\r\n"
            f"Subject: Compte rendu {n}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
            f"Message-ID: <m{n}@b.fr>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            ).encode() + body


class Harness:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.offloads = 0

        async def offload(work: Any) -> Any:
            self.offloads += 1
            return await asyncio.to_thread(work)

        async def audit_read(session: Any, count: int) -> None:  # awaited, like the server's
            return None

        self.server = SimpleNamespace(
            config=SimpleNamespace(imap_command_burst=100, imap_command_rate=100.0, imap_command_timeout=60.0,
                                   imap_max_literal=50_000_000),
            store=store, derived_cache=DerivedCache(), offload=offload, fan=FolderFan(store.feed),
            audit_read=audit_read)

    async def start(self) -> None:
        a, b = socket.socketpair()
        reader, self.writer = await asyncio.open_connection(sock=a)
        self.peer_reader, self.peer_writer = await asyncio.open_connection(sock=b)
        self.mb = await self.store.create_mailbox(INS, MailboxState.ACTIVE)
        self.s = Session(self.server, reader, self.writer, tls=True)  # type: ignore[arg-type]
        self.s.user, self.s.state = self.mb, AUTH

    async def run(self, tag: bytes, command: bytes) -> list[bytes]:
        await self.s.execute(tag + b" " + command)
        return await until_tagged(self.peer_reader, tag)

    def close(self) -> None:
        self.writer.close()
        self.peer_writer.close()


@pytest.fixture
async def h(store: Store) -> AsyncIterator[Harness]:
    harness = Harness(store)
    await harness.start()
    yield harness
    harness.close()


async def test_a_small_fetch_is_rendered_without_a_worker_hop(h: Harness) -> None:
    await h.store.deliver([h.mb], msg(1))
    raw = await h.store.fetch_raw(INS, "INBOX", 1)
    await h.run(b"a", b"EXAMINE INBOX")
    got = await h.run(b"b", b"FETCH 1 (UID BODY.PEEK[1] BODY.PEEK[HEADER])")
    assert got[-1].startswith(b"b OK") and h.offloads == 0  # the old code offloaded every render
    sel = h.s.selected
    assert sel is not None
    expected = b"* 1 FETCH " + fetchmod.render(sel.view(1), Parser(b"(UID BODY.PEEK[1] BODY.PEEK[HEADER])")
                                                .fetch_atts(), raw)
    assert b"\r\n".join(got[:-1]) == expected.rstrip(b"\r\n")


async def test_a_large_fetch_is_still_rendered_in_a_worker(h: Harness) -> None:
    await h.store.deliver([h.mb], msg(2, body_size=INLINE_RENDER_BYTES + 10_000))
    await h.run(b"a", b"EXAMINE INBOX")
    got = await h.run(b"b", b"FETCH 1 (BODY.PEEK[TEXT])")
    assert got[-1].startswith(b"b OK") and h.offloads == 1
    assert b"ligne de compte rendu 2" in got[1]


async def test_small_envelopes_are_parsed_without_a_worker_hop(h: Harness) -> None:
    for i in range(3):
        await h.store.deliver([h.mb], msg(i))
    await h.run(b"a", b"EXAMINE INBOX")
    got = await h.run(b"b", b"FETCH 1:3 (ENVELOPE)")
    assert got[-1].startswith(b"b OK") and len(got) == 4 and h.offloads == 0
    assert all(b"Compte rendu" in line for line in got[:-1])


async def test_append_into_the_selected_folder_reads_no_uidvalidity(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = h.store.folder_uidvalidity

    async def counted(mailbox_id: int, name: str) -> int | None:
        reads.append(name)
        return await real(mailbox_id, name)

    monkeypatch.setattr(h.store, "folder_uidvalidity", counted)
    await h.run(b"a", b"SELECT INBOX")
    sel = h.s.selected
    assert sel is not None
    m = msg(7)
    got = await h.run(b"b", b"APPEND INBOX {%d}\r\n" % len(m) + m)
    assert got[-1] == b"b OK [APPENDUID %d 1] APPEND done" % sel.uidvalidity
    assert reads == []  # the old code read it from the store first
    assert b"* 1 EXISTS" in got and b"* 1 RECENT" in got  # its own \Recent, claimed in the same job
    # another folder is still read
    await h.store.create_folder(h.mb.id, "Archives")
    got = await h.run(b"d", b"APPEND Archives {%d}\r\n" % len(m) + m)
    assert got[-1].startswith(b"d OK [APPENDUID ") and reads == ["Archives"]


async def test_append_into_a_selected_folder_re_created_elsewhere_adds_nothing(h: Harness) -> None:
    """The view's UIDVALIDITY is checked in the writer job: a folder deleted and
    re-created by another node before this session heard of it gets TRYCREATE and
    keeps no message (the APPENDUID would name the wrong UIDVALIDITY)."""
    await h.run(b"a", b"SELECT INBOX")
    sel = h.s.selected
    assert sel is not None
    sel.uidvalidity += 1  # what the view would hold had the folder been re-created meanwhile
    m = msg(8)
    got = await h.run(b"b", b"APPEND INBOX {%d}\r\n" % len(m) + m)
    assert got[-1].startswith(b"b NO [TRYCREATE]")
    snap = await h.store.snapshot(h.mb.id, "INBOX")
    assert snap.messages == []


async def test_an_append_retried_by_the_writer_keeps_the_claim_of_its_last_run(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that meets another transaction is run again (writer.py): the APPEND's
    \\Recent claim is the one its committed run made, not the rolled-back first run's
    (which another node's commit in between could make differ: simulated here)."""
    from sqlalchemy.exc import OperationalError

    from relay.imap import append as appendmod
    runs: list[int] = []
    real = appendmod.claim_all

    def claim(conn: Any, folder_id: int) -> tuple[int, int]:
        runs.append(folder_id)
        return (5, 6) if len(runs) == 1 else real(conn, folder_id)

    def conflict_once(conn: Any, changes: Any) -> None:  # the batch's first run meets a lock
        if len(runs) == 1:
            raise OperationalError("COMMIT", {}, Exception("database is locked"))

    await h.run(b"a", b"SELECT INBOX")
    monkeypatch.setattr(appendmod, "claim_all", claim)
    monkeypatch.setattr(h.store.writer, "before_commit", conflict_once)
    m = msg(7)
    got = await h.run(b"b", b"APPEND INBOX {%d}\r\n" % len(m) + m)
    assert len(runs) == 2 and got[-1].startswith(b"b OK [APPENDUID ")
    assert b"* 1 RECENT" in got  # the first run's claim (5, 6) left it without \Recent


def test_the_command_metric_child_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = metrics.COMMAND_SECONDS.labels

    def counted(*names: str) -> Any:
        calls.extend(names)
        return real(*names)

    monkeypatch.setattr(metrics.COMMAND_SECONDS, "labels", counted)
    monkeypatch.setattr(metrics, "_BY_COMMAND", {})
    first = metrics.command_seconds("NOOP")
    assert metrics.command_seconds("NOOP") is first and calls == ["NOOP"]
    first.observe(0.001)
    assert metrics.command_seconds("FETCH") is not first and calls == ["NOOP", "FETCH"]


CORPUS = [
    msg(1),
    b"From: a@b\nSubject: lf only\n folded\n\nbody\n",
    b"From: a@b\r\nSubject: no body at all\r\n",
    b"no header line at all\r\n\r\nbody\r\n",
    b"From: =?utf-8?q?M=C3=A9decin?= <a@b>\r\nSubject: \xc3\xa9t\xc3\xa9 8-bit\r\nX-Nul: a\x00b\r\n\r\nx\r\n",
    (b"From: a@b\r\nTo: c@d\r\nSubject: mixte\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n"
     b"\r\n--zz\r\nContent-Type: text/plain\r\n\r\nhi\r\n--zz\r\nContent-Type: message/rfc822\r\n\r\n"
     b"Subject: inner\r\nFrom: e@f\r\n\r\ninner body\r\n--zz--\r\n"),
]
HEADER_ITEMS = [b"RFC822.HEADER", b"BODY.PEEK[HEADER]", b"BODY.PEEK[HEADER]<5.20>",
                b"BODY.PEEK[HEADER.FIELDS (From Subject X-Nul)]", b"BODY.PEEK[HEADER.FIELDS.NOT (Subject)]",
                b"BODY.PEEK[HEADER.FIELDS (Content-Type)]<0.10>", b"BODY.PEEK[HEADER.FIELDS (Absent)]"]


@pytest.mark.parametrize("raw", CORPUS)
def test_header_items_from_the_cached_header_block_are_the_same_bytes(raw: bytes) -> None:
    import datetime as dt

    from relay.imap.fetchcache import derived_name
    from relay.imap.types import MessageView

    view = MessageView(seq=3, uid=9, flags=frozenset({"\\Seen"}), internal_date=dt.datetime.now(dt.timezone.utc),
                       size=len(raw), recent=False, modseq=4)
    for item in HEADER_ITEMS:
        atts = Parser(b"(UID FLAGS " + item + b")").fetch_atts()
        assert [derived_name(a) for a in atts][-1] == fetchmod.HEADER
        known = fetchmod.derive(raw, frozenset({fetchmod.HEADER}))
        assert fetchmod.render(view, atts, None, known=known) == fetchmod.render(view, atts, raw), item
    # a section of a part, the body, the whole message: not from the header block
    for item in (b"BODY.PEEK[1.HEADER]", b"BODY.PEEK[TEXT]", b"BODY.PEEK[]", b"RFC822", b"BODY.PEEK[1.MIME]"):
        assert derived_name(Parser(b"(" + item + b")").fetch_atts()[0]) is None, item


async def test_second_fetch_of_header_fields_decrypts_nothing(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    for raw in CORPUS:
        await h.store.deliver([h.mb], raw)
    decrypted: list[int] = []
    real = h.store.fetch_raw_many

    async def counting(ins: str, folder: str, uids: Any) -> Any:
        decrypted.extend(uids)
        return await real(ins, folder, uids)

    monkeypatch.setattr(h.store, "fetch_raw_many", counting)
    await h.run(b"a", b"EXAMINE INBOX")
    command = b"FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)] RFC822.HEADER ENVELOPE)"
    first = await h.run(b"b", command)
    assert sorted(decrypted) == list(range(1, len(CORPUS) + 1))
    second = await h.run(b"c", command)
    assert sorted(decrypted) == list(range(1, len(CORPUS) + 1))  # the old code decrypted them all again
    assert first[:-1] == second[:-1] and second[-1].startswith(b"c OK")


async def test_a_second_fetch_asks_no_blob_ids_and_an_expunged_message_is_still_left_out(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3):
        await h.store.deliver([h.mb], msg(i))
    asked: list[list[int]] = []
    real = h.store.blob_ids

    async def counted(folder_id: int, uids: Any) -> dict[int, str]:
        asked.append(list(uids))
        return await real(folder_id, uids)

    monkeypatch.setattr(h.store, "blob_ids", counted)
    await h.run(b"a", b"SELECT INBOX")
    first = await h.run(b"b", b"FETCH 1:3 (ENVELOPE)")
    assert asked == [[1, 2, 3]] and len(first) == 4
    second = await h.run(b"c", b"FETCH 1:3 (ENVELOPE)")
    assert asked == [[1, 2, 3]] and second[:-1] == first[:-1]  # the old code asked the store again
    # another session expunges message 2: not announced during FETCH (RFC 3501 §7.4.1), and
    # not answered either (RFC 2180 §4.1.2), as before
    await h.store.store_flags_if(h.mb.id, "INBOX", [2], "+", ["\\Deleted"])
    assert await h.store.expunge(h.mb.id, "INBOX") == [2]
    third = await h.run(b"d", b"FETCH 1:3 (ENVELOPE)")
    assert asked == [[1, 2, 3], [2]]
    assert [line.split(b" ")[1] for line in third[:-1]] == [b"1", b"3"] and third[-1].startswith(b"d OK")
    got = await h.run(b"e", b"NOOP")
    assert b"* 2 EXPUNGE" in got
    sel = h.s.selected
    assert sel is not None and set(sel.blobs) == {1, 3}  # forgotten with the message


def test_a_cached_header_block_is_parsed_once_and_the_parses_kept_are_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from relay.imap.types import MessageView

    parses: list[int] = []
    real = fetchmod.parse

    def counting(raw: bytes) -> Any:
        parses.append(len(raw))
        return real(raw)

    monkeypatch.setattr(fetchmod, "parse", counting)
    monkeypatch.setattr(fetchmod, "HEADERS_PARSED", 3)
    monkeypatch.setattr(fetchmod, "_HEADS", type(fetchmod._HEADS)())
    view = MessageView(seq=1, uid=1, flags=frozenset(), internal_date=dt.datetime.now(dt.timezone.utc), size=10,
                       recent=False, modseq=1)
    atts = Parser(b"(BODY.PEEK[HEADER.FIELDS (Subject)])").fetch_atts()
    blocks = [{fetchmod.HEADER: b"Subject: n%d\r\n\r\n" % i} for i in range(5)]
    assert fetchmod.unparsed_header_bytes([b[fetchmod.HEADER] for b in blocks]) == sum(
        len(b[fetchmod.HEADER]) for b in blocks)
    first = [fetchmod.render(view, atts, None, known=b) for b in blocks]
    assert len(parses) == 5 and len(fetchmod._HEADS) == 3  # bounded: the newest three
    again = fetchmod.render(view, atts, None, known=blocks[4])
    assert again == first[4] and len(parses) == 5  # the old code parsed it again
    assert fetchmod.unparsed_header_bytes([blocks[4][fetchmod.HEADER]]) == 0
    fetchmod.render(view, atts, None, known=blocks[0])  # evicted: parsed again
    assert len(parses) == 6


async def test_a_pipelined_command_already_received_is_read_without_a_timer(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import relay.imap.session as sessionmod

    timers: list[float] = []
    real = asyncio.timeout

    def counted(delay: float | None) -> Any:
        timers.append(delay or 0)
        return real(delay)

    monkeypatch.setattr(sessionmod.asyncio, "timeout", counted)
    h.peer_writer.write(b"a NOOP\r\nb NOOP\r\n")
    await h.peer_writer.drain()
    assert await h.s.read_line(30) == b"a NOOP\r\n"
    assert len(timers) <= 1  # the first may have waited for the bytes
    before = len(timers)
    assert await h.s.read_line(30) == b"b NOOP\r\n"
    assert len(timers) == before  # already buffered: no timer (the old code armed one per line)
    task = asyncio.ensure_future(h.s.read_line(30))  # nothing buffered: a timer guards the wait
    await asyncio.sleep(0.05)
    assert len(timers) == before + 1
    h.peer_writer.write(b"c NOOP\r\n")
    assert await asyncio.wait_for(task, 30) == b"c NOOP\r\n"


async def test_response_names_are_worked_out_once_per_fetch(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        await h.store.deliver([h.mb], msg(i))
    await h.run(b"a", b"EXAMINE INBOX")
    command = b"FETCH 1:5 (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)] ENVELOPE)"
    before = await h.run(b"b", command)  # fills the cache
    named: list[object] = []
    real = fetchmod._name

    def counting(att: Any) -> bytes:
        named.append(att)
        return real(att)

    monkeypatch.setattr(fetchmod, "_name", counting)
    for command_ in (command, b"FETCH 1:5 (UID BODY.PEEK[TEXT] RFC822.SIZE)"):
        named.clear()
        got = await h.run(b"c", command_)
        assert got[-1].startswith(b"c OK") and len([x for x in got if x.startswith(b"* ")]) == 5
        assert len(named) <= 4  # once per attribute, not once per message (the old code: 5 x 2 x 3)
    assert (await h.run(b"d", command))[:-1] == before[:-1]


async def test_an_expunge_with_nothing_deleted_asks_the_store_nothing(h: Harness) -> None:
    """About half of imaptest's EXPUNGEs find nothing to remove: when the view knows
    every message's flags and none is \\Deleted, no writer transaction (the old code
    made one per EXPUNGE); what the session flags itself is still removed."""
    for i in range(3):
        await h.store.deliver([h.mb], msg(i))
    await h.run(b"a", b"SELECT INBOX")
    jobs = h.store.writer.jobs
    assert await h.run(b"b", b"EXPUNGE") == [b"b OK EXPUNGE done"]
    assert await h.run(b"c", b"UID EXPUNGE 1:*") == [b"c OK EXPUNGE done"]
    # on PostgreSQL another node's \Deleted may not be heard yet: the store is asked
    assert h.store.writer.jobs == jobs + (0 if h.store.hears_every_change else 2)
    await h.run(b"d", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert await h.run(b"e", b"EXPUNGE") == [b"* 2 EXPUNGE", b"e OK EXPUNGE done"]
    assert [m.uid for m in (await h.store.snapshot(h.mb.id, "INBOX")).messages] == [1, 3]


async def test_what_other_sessions_flag_deleted_is_expunged(h: Harness) -> None:
    """\\Deleted set by another session, and a new message not announced yet that
    arrived flagged \\Deleted: this session's view heard of both (the feed), so its
    EXPUNGE asks the store and removes them."""
    for i in range(3):
        await h.store.deliver([h.mb], msg(i))
    await h.run(b"a", b"SELECT INBOX")
    await h.store.store_flags(h.mb.id, "INBOX", [1], "+", ["\\Deleted"])  # another session's STORE
    got = await h.run(b"b", b"EXPUNGE")
    assert b"* 1 EXPUNGE" in got and got[-1] == b"b OK EXPUNGE done"
    await h.store.deliver([h.mb], msg(9), flags=["\\Deleted"])  # another session's APPEND
    got = await h.run(b"c", b"UID EXPUNGE 2:3")  # only those named: the new one stays
    assert got == [b"* 3 EXISTS", b"* 3 RECENT", b"c OK EXPUNGE done"]
    assert [m.uid for m in (await h.store.snapshot(h.mb.id, "INBOX")).messages] == [2, 3, 4]
    await h.run(b"d", b"EXPUNGE")
    assert [m.uid for m in (await h.store.snapshot(h.mb.id, "INBOX")).messages] == [2, 3]


async def test_flags_published_without_their_value_or_another_node_send_expunge_to_the_store(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag change heard without its flags (another node's, nodefeed.py) may be
    \\Deleted; and on a store that does not hear every change (PostgreSQL, several
    nodes) the view cannot know: both ask the store, as before."""
    from mailbox_store.feed import Change

    await h.store.deliver([h.mb], msg(1))
    await h.run(b"a", b"SELECT INBOX")
    sel = h.s.selected
    assert sel is not None and not sel.may_hold_deleted()
    sel.feed(Change("message.flags", h.mb.id, "INBOX", 1, flags=None, modseq=99, remote=True))
    assert sel.may_hold_deleted() and sel.may_hold_deleted([1]) and not sel.may_hold_deleted([])
    await h.run(b"b", b"NOOP")  # the change announced (flags read from the store): none deleted
    assert not sel.may_hold_deleted()
    monkeypatch.setattr(type(h.store), "hears_every_change", property(lambda self: False))
    jobs = h.store.writer.jobs
    assert await h.run(b"c", b"EXPUNGE") == [b"c OK EXPUNGE done"]
    assert h.store.writer.jobs == jobs + 1
