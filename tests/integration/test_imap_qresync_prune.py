"""QRESYNC's expunged UIDs are pruned (issue 12, RFC 7162 §3.2.5.2): a folder keeps its
most recent ones; a phone resynchronising from a modseq older than what was pruned gets
every UID of its known range that is missing, one from a newer modseq the exact list."""
from __future__ import annotations

import imaplib
import re

from mailbox_store.expunged import prune_expunged
from relay.imap.expungeprune import ExpungedPruner
from tests.integration.conftest import RunningDaemon, message
from tests.integration.test_imap_condstore import _highest, raw


def _expunge_uid(relay: RunningDaemon, uid: int) -> int:
    """Expunge one UID from INBOX in its own session; the folder's HIGHESTMODSEQ after."""
    c = relay.imap()
    c.select("INBOX")
    assert raw(c, f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")[1].startswith(b"OK")
    assert raw(c, f"UID EXPUNGE {uid}")[1].startswith(b"OK")
    lines, _ = raw(c, "STATUS INBOX (HIGHESTMODSEQ)")
    c.logout()
    return _highest(lines)


def _vanished(lines: list[bytes]) -> bytes:
    return next((x[len(b"* VANISHED (EARLIER) "):] for x in lines if x.startswith(b"* VANISHED (EARLIER)")), b"")


def test_pruned_expunges_answer_with_every_missing_uid(relay: RunningDaemon) -> None:
    for i in range(6):
        relay.deliver(message(subject=f"cr {i}", body=f"texte {i}\r\n"))
    phone = relay.imap()
    raw(phone, "ENABLE QRESYNC")
    lines, _ = raw(phone, "SELECT INBOX")
    uidvalidity = int(next(re.search(rb"UIDVALIDITY (\d+)", x)[1] for x in lines if b"UIDVALIDITY" in x))
    before = _highest(lines)
    phone.logout()
    _expunge_uid(relay, 2)
    after_4 = _expunge_uid(relay, 4)
    _expunge_uid(relay, 5)

    # keep one entry: those of UIDs 2 and 4 are forgotten, the folder's horizon rises
    pruned = relay.call(prune_expunged(relay.store, keep=1, max_rows=100))
    assert (pruned.folders, pruned.rows) == (1, 2)

    def resync(modseq: int) -> list[bytes]:
        c = relay.imap()
        raw(c, "ENABLE QRESYNC")
        lines, tagged = raw(c, f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:6))")
        assert tagged.startswith(b"OK")
        lines += raw(c, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")[0]
        c.logout()
        return lines

    old = resync(before)  # older than the horizon: all missing UIDs of 1:6
    assert [_vanished(x) for x in ([y] for y in old) if _vanished(x)] == [b"2,4:5", b"2,4:5"]
    recent = resync(after_4)  # at the horizon: the exact list, still known
    assert [_vanished(x) for x in ([y] for y in recent) if _vanished(x)] == [b"5", b"5"]


def test_pruning_is_bounded_per_run_and_runs_in_the_daemon(relay: RunningDaemon) -> None:
    for i in range(5):
        relay.deliver(message(subject=f"cr {i}", body=f"texte {i}\r\n"))
    for uid in (1, 2, 3, 4):
        _expunge_uid(relay, uid)
    pruner = ExpungedPruner(relay.store, keep=1, max_rows=2)
    assert relay.call(pruner.run_once()) == 2  # bounded: 3 were due
    assert relay.call(pruner.run_once()) == 1
    assert relay.call(pruner.run_once()) == 0
    assert relay.daemon.imap is not None and relay.daemon.imap.pruner.keep == 1000  # [imap] default
    c = relay.imap()
    raw(c, "ENABLE QRESYNC")
    lines, _ = raw(c, "SELECT INBOX (QRESYNC (1 1))")  # a wrong UIDVALIDITY: no resync data
    assert not any(b"VANISHED" in x for x in lines)
    c.logout()
    assert isinstance(c, imaplib.IMAP4)
