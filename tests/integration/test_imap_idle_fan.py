"""IDLE with the IMAP fan-out (issue 12): sessions idling on one folder are told of a
delivery to it, those on another folder of nothing; an idling session gets BYE when the
daemon stops; a folder deleted by another session ends the idling session's view."""
from __future__ import annotations

import imaplib

from tests.integration.conftest import RunningDaemon, message
from tests.integration.test_imap_condstore import raw


def _idle(c: imaplib.IMAP4) -> None:
    c.send(b"I1 IDLE\r\n")
    assert c.readline().startswith(b"+")
    c.sock.settimeout(30)


def test_a_delivery_wakes_the_inbox_sessions_only(relay: RunningDaemon) -> None:
    inbox = [relay.imap() for _ in range(3)]
    for c in inbox:
        raw(c, "SELECT INBOX")
        _idle(c)
    sent = relay.imap()
    raw(sent, "SELECT Sent")
    _idle(sent)
    relay.deliver(message(subject="un", body="un\r\n"))
    for c in inbox:
        assert c.readline() == b"* 1 EXISTS\r\n"
    sent.send(b"DONE\r\n")  # nothing for a session showing another folder: its next line ends IDLE
    assert sent.readline().startswith(b"I1 OK")
    sent.logout()
    for c in inbox:
        c.send(b"DONE\r\n")
        while not c.readline().startswith(b"I1 "):
            pass
        c.logout()


def test_idle_ends_with_bye_when_the_daemon_stops_or_the_folder_goes(relay: RunningDaemon) -> None:
    other = relay.imap()
    raw(other, "CREATE Projets")
    gone = relay.imap()
    raw(gone, "SELECT Projets")
    _idle(gone)
    raw(other, "DELETE Projets")
    assert gone.readline().startswith(b"* BYE")
    c = relay.imap()
    raw(c, "SELECT INBOX")
    _idle(c)
    relay.stop()
    assert c.readline() == b"* BYE server shutting down\r\n"
