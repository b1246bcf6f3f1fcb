"""CONDSTORE and QRESYNC (RFC 7162) against a real imaplib client: modseqs of MX
deliveries, STORE, EXPUNGE and another session's changes, and the one-command
resynchronisation of a phone (SELECT ... (QRESYNC ...))."""
from __future__ import annotations

import imaplib
import itertools
import re

from tests.integration.conftest import RunningDaemon, message

_tags = itertools.count(1)


def raw(c: imaplib.IMAP4, command: str) -> tuple[list[bytes], bytes]:
    """Send one command as written; its untagged lines and its tagged reply."""
    tag = b"Z%d" % next(_tags)
    c.send(tag + b" " + command.encode() + b"\r\n")
    lines: list[bytes] = []
    while True:
        line = c.readline().rstrip(b"\r\n")
        if line.startswith(tag + b" "):
            return lines, line[len(tag) + 1:]
        lines.append(line)


def _modseqs(lines: list[bytes]) -> dict[int, int]:
    return {int(m[1]): int(m[2]) for m in (re.match(rb"\* (\d+) FETCH \(.*MODSEQ \((\d+)\)", x) for x in lines) if m}


def _highest(lines: list[bytes]) -> int:
    return int(next(re.search(rb"HIGHESTMODSEQ (\d+)", x)[1] for x in lines if b"HIGHESTMODSEQ" in x))


def test_condstore_modseq_store_unchangedsince_search_status(relay: RunningDaemon) -> None:
    for i in range(3):
        relay.deliver(message(subject=f"cr {i}", body=f"texte {i}\r\n"))
    c = relay.imap()
    caps = raw(c, "CAPABILITY")[0][0]
    assert b" CONDSTORE" in caps and b" QRESYNC" in caps
    lines, tagged = raw(c, "SELECT INBOX (CONDSTORE)")
    assert tagged.startswith(b"OK")
    high = _highest(lines)
    lines, _ = raw(c, "FETCH 1:* (MODSEQ)")
    mods = _modseqs(lines)
    assert set(mods) == {1, 2, 3} and max(mods.values()) == high
    # STORE: the new modseq comes back with the flags, and is the new HIGHESTMODSEQ
    lines, tagged = raw(c, "STORE 2 +FLAGS (\\Seen)")
    assert tagged.startswith(b"OK")
    after = _modseqs(lines)[2]
    assert after > high
    lines, _ = raw(c, "STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
    assert re.search(rb"HIGHESTMODSEQ %d" % after, lines[0])
    # UNCHANGEDSINCE: message 2 changed after `high`, message 1 did not (RFC 7162 §3.1.3)
    lines, tagged = raw(c, f"STORE 1:2 (UNCHANGEDSINCE {high}) +FLAGS (\\Flagged)")
    assert tagged.startswith(b"OK [MODIFIED 2]")
    flagged = {int(x.split()[1]) for x in lines if b"\\Flagged" in x}
    assert flagged == {1}
    lines, tagged = raw(c, "UID STORE 1 (UNCHANGEDSINCE 0) +FLAGS (\\Answered)")
    assert tagged.startswith(b"OK [MODIFIED 1]")
    # CHANGEDSINCE: only what changed after `high`, with its MODSEQ
    lines, _ = raw(c, f"FETCH 1:* (FLAGS) (CHANGEDSINCE {high})")
    assert set(_modseqs(lines)) == {1, 2}
    # SEARCH MODSEQ (RFC 7162 §3.1.5): the highest modseq of the hits comes along
    lines, _ = raw(c, f"SEARCH MODSEQ {high + 1}")
    m = re.match(rb"\* SEARCH ([\d ]+) \(MODSEQ (\d+)\)", lines[0])
    assert m and sorted(int(x) for x in m[1].split()) == [1, 2]
    lines, _ = raw(c, f'SEARCH RETURN (MIN) MODSEQ "/flags/\\\\seen" all {high + 1}')
    assert re.match(rb"\* ESEARCH \(TAG \"Z\d+\"\) MIN 1 MODSEQ \d+", lines[0])
    # a bad modifier is a BAD, not a crash
    assert raw(c, "FETCH 1 (FLAGS) (CHANGEDSINCE 0)")[1].startswith(b"BAD")
    assert raw(c, "FETCH 1 (FLAGS) (CHANGEDSINCE 5 VANISHED)")[1].startswith(b"BAD")
    c.logout()


def test_condstore_enabled_by_fetch_modseq_and_other_sessions_changes(relay: RunningDaemon) -> None:
    for i in range(2):
        relay.deliver(message(subject=f"cr {i}", body=f"texte {i}\r\n"))
    c = relay.imap()
    lines, _ = raw(c, "SELECT INBOX")
    assert not any(b"HIGHESTMODSEQ" in x for x in lines)
    lines, _ = raw(c, "FETCH 1 (MODSEQ)")  # RFC 7162 §3.1.2.1: a CONDSTORE-enabling command
    assert any(x.startswith(b"* OK [HIGHESTMODSEQ ") for x in lines)
    other = relay.imap()
    other.select("INBOX")
    other.store("2", "+FLAGS", "(\\Flagged)")
    other.logout()
    lines, _ = raw(c, "NOOP")
    m = [x for x in lines if x.startswith(b"* 2 FETCH")]
    assert m and b"\\Flagged" in m[0] and b"MODSEQ (" in m[0]
    c.logout()


def test_qresync_select_vanished_and_changed_flags(relay: RunningDaemon) -> None:
    for i in range(4):
        relay.deliver(message(subject=f"cr {i}", body=f"texte {i}\r\n"))
    phone = relay.imap()
    assert raw(phone, "ENABLE QRESYNC")[0] == [b"* ENABLED QRESYNC"]
    lines, _ = raw(phone, "SELECT INBOX")
    uidvalidity = int(next(re.search(rb"UIDVALIDITY (\d+)", x)[1] for x in lines if b"UIDVALIDITY" in x))
    high = _highest(lines)
    raw(phone, "LOGOUT")
    # meanwhile, on the webmail or another device
    other = relay.imap()
    other.select("INBOX")
    other.store("2", "+FLAGS", "(\\Seen)")
    other.store("3", "+FLAGS", "(\\Deleted)")
    other.expunge()
    other.logout()
    relay.deliver(message(subject="nouveau", body="nouveau\r\n"))
    phone = relay.imap()
    raw(phone, "ENABLE QRESYNC")
    lines, tagged = raw(phone, f"SELECT INBOX (QRESYNC ({uidvalidity} {high} 1:4))")
    assert tagged.startswith(b"OK")
    assert b"* VANISHED (EARLIER) 3" in lines
    changed = [x for x in lines if b" FETCH " in x]
    assert len(changed) == 1 and b"UID 2 " in changed[0] and b"\\Seen" in changed[0]
    assert b"* 4 EXISTS" in lines
    # UID FETCH ... (CHANGEDSINCE n VANISHED) (RFC 7162 §3.2.6)
    lines, _ = raw(phone, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {high} VANISHED)")
    assert lines[0] == b"* VANISHED (EARLIER) 3"
    assert {re.search(rb"UID (\d+)", x)[1] for x in lines[1:]} == {b"2", b"5"}
    # an expunge in the session is announced as VANISHED, not EXPUNGE (§3.2.10)
    raw(phone, "UID STORE 1 +FLAGS (\\Deleted)")
    lines, _ = raw(phone, "EXPUNGE")
    assert lines == [b"* VANISHED 1"]
    # a stale UIDVALIDITY gets no resynchronisation data, and [CLOSED] ends the old view
    lines, _ = raw(phone, f"SELECT INBOX (QRESYNC ({uidvalidity + 1} {high}))")
    assert lines[0] == b"* OK [CLOSED] previous mailbox closed"
    assert not any(b"VANISHED" in x or b" FETCH " in x for x in lines)
    phone.logout()


def test_qresync_select_needs_enable(relay: RunningDaemon) -> None:
    c = relay.imap()
    assert raw(c, "SELECT INBOX (QRESYNC (1 1))")[1].startswith(b"BAD")
    assert raw(c, "SELECT INBOX (FOO)")[1].startswith(b"BAD")
    c.logout()
