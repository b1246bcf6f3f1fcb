"""Store.deliver(thread_root=): the MX hands in the thread root it read from the headers
it parsed once (relay/smtp/mx.py), so the store does not parse them again; a header
section beyond HEAD_MAX is still read from the bytes, as the webmail reads it back."""
from __future__ import annotations

import os

from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store
from mailbox_store.thread import HEAD_MAX, thread_root_of
from policy.recipients import MailboxState

INS_A = "279035121518989"


def message(msg_id: str, extra_head: str = "") -> bytes:
    return (f"From: dr.house@hopital.mssante.fr\r\nTo: {INS_A}@patient.mssante.fr\r\nSubject: Suivi\r\n"
            f"Message-ID: {msg_id}\r\n{extra_head}\r\nBonjour,\r\n").encode()


async def test_the_callers_root_is_stored_and_a_huge_header_is_read_from_the_bytes(store_url: str) -> None:
    store = await Store.open(store_url, MasterKey(os.urandom(32)))
    try:
        mb = await store.create_mailbox(INS_A, MailboxState.ACTIVE)
        prefix = b"Received: from mx.test by patient.mssante.fr; Sun, 6 Dec 2026 01:00:00 +0000\r\n"
        # the root the caller read (here on purpose another id than the bytes' own)
        await store.deliver([mb], message("<own@h>"), prefix=prefix, thread_root="given@h")
        assert await store.thread_members(mb.id, mb.ins, "given@h") == [("INBOX", 1)]
        assert await store.thread_members(mb.id, mb.ins, thread_root_of(message("<own@h>"))) == []
        # no root given: read from the bytes, as before
        second = message("<second@h>")
        await store.deliver([mb], second, prefix=prefix)
        assert await store.thread_members(mb.id, mb.ins, thread_root_of(second)) == [("INBOX", 2)]
        # a header section past HEAD_MAX: the stored root is what thread_root_of reads
        # back from the stored bytes, whatever the caller said
        # (a full parse finds References, past HEAD_MAX; the stored bytes' reading does not)
        big = message("<big@h>", "X-Filler: " + "a" * HEAD_MAX + "\r\nReferences: <origin@h>\r\n")
        assert thread_root_of(prefix + big[:HEAD_MAX]) == "<big@h>"
        await store.deliver([mb], big, prefix=prefix, thread_root="<origin@h>")
        assert await store.thread_members(mb.id, mb.ins, "<origin@h>") == []
        assert await store.thread_members(mb.id, mb.ins, "<big@h>") == [("INBOX", 3)]
    finally:
        await store.close()
