"""NOTIFY (RFC 5465) against a real imaplib client: the initial STATUS of NOTIFY SET
STATUS, then STATUS responses for changes to folders other than the selected one (a
delivery to INBOX, another session's flags and expunge), told after a command and
while idling; NOTIFY NONE ends them; unsupported events get NO [BADEVENT]."""
from __future__ import annotations

import re
import socket

from tests.integration.conftest import RunningDaemon, message
from tests.integration.test_imap_condstore import raw


def _statuses(lines: list[bytes]) -> list[bytes]:
    return [x for x in lines if x.startswith(b"* STATUS")]


def test_notify_status_for_other_folders(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="un", body="un\r\n"))
    c = relay.imap()
    assert b" NOTIFY" in raw(c, "CAPABILITY")[0][0]
    assert raw(c, "CREATE Dossiers")[1].startswith(b"OK")
    raw(c, "SELECT Dossiers")
    lines, tagged = raw(c, "NOTIFY SET STATUS (SELECTED (MessageNew MessageExpunge)) "
                           "(PERSONAL (MessageNew MessageExpunge))")
    assert tagged.startswith(b"OK")
    statuses = _statuses(lines)
    # every personal folder but the selected one (SELECTED's)
    assert any(re.match(rb"\* STATUS INBOX \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)$", x) for x in statuses)
    assert any(x.startswith(b"* STATUS Sent (") for x in statuses)
    assert not any(b"Dossiers" in x for x in statuses)
    relay.deliver(message(subject="deux", body="deux\r\n"))
    lines, _ = raw(c, "NOOP")
    assert [s[:33] for s in _statuses(lines)] == [b"* STATUS INBOX (MESSAGES 2 UIDNEX"]
    # told while idling, without a command
    c.send(b"I1 IDLE\r\n")
    assert c.readline().startswith(b"+")
    relay.deliver(message(subject="trois", body="trois\r\n"))
    c.sock.settimeout(30)
    line = c.readline()
    assert line.startswith(b"* STATUS INBOX (MESSAGES 3 UIDNEXT 4"), line
    c.send(b"DONE\r\n")
    assert c.readline().startswith(b"I1 OK")
    # FlagChange was not asked for: another session's flags are not told; its expunge is
    other = relay.imap()
    other.select("INBOX")
    other.store("1", "+FLAGS", "(\\Seen \\Deleted)")
    lines, _ = raw(c, "NOOP")
    assert not _statuses(lines)
    other.expunge()
    other.logout()
    lines, _ = raw(c, "NOOP")
    assert _statuses(lines) == [b"* STATUS INBOX (MESSAGES 2)"]
    # NOTIFY NONE: nothing more
    assert raw(c, "NOTIFY NONE")[1].startswith(b"OK")
    relay.deliver(message(subject="quatre", body="quatre\r\n"))
    lines, _ = raw(c, "NOOP")
    assert not _statuses(lines)
    c.logout()


def test_notify_flagchange_mailboxes_and_refusals(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="un", body="un\r\n"))
    c = relay.imap()
    lines, tagged = raw(c, "NOTIFY SET STATUS (MAILBOXES INBOX (FlagChange))")
    assert tagged.startswith(b"OK")
    assert re.match(rb"\* STATUS INBOX \(UIDVALIDITY \d+ HIGHESTMODSEQ \d+\)$", _statuses(lines)[0])
    high = int(re.search(rb"HIGHESTMODSEQ (\d+)", _statuses(lines)[0])[1])
    other = relay.imap()
    other.select("INBOX")
    other.store("1", "+FLAGS", "(\\Flagged)")
    other.logout()
    lines, _ = raw(c, "NOOP")
    assert int(re.search(rb"HIGHESTMODSEQ (\d+)", _statuses(lines)[0])[1]) > high
    # without STATUS: no initial STATUS
    lines, tagged = raw(c, "NOTIFY SET (MAILBOXES INBOX (MessageNew MessageExpunge FlagChange))")
    assert tagged.startswith(b"OK") and not _statuses(lines)
    lines, tagged = raw(c, "NOTIFY SET (PERSONAL (MailboxName))")
    assert tagged.startswith(b"NO [BADEVENT (MessageNew MessageExpunge FlagChange)]")
    assert raw(c, "NOTIFY SET (NOWHERE (MessageNew))")[1].startswith(b"BAD")
    assert raw(c, "NOTIFY SET (SELECTED (MessageNew))")[1].startswith(b"BAD")
    c.logout()
    assert isinstance(c.sock, socket.socket)
