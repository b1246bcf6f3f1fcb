"""Children's mailboxes: a guardian reads them in the "Other Users" namespace (RFC 2342);
nobody else can, whatever name they type (issue 4, DESIGN.md §4 "Minors and helpers")."""
from __future__ import annotations

import asyncio
import imaplib
import re

import pytest

from policy.recipients import MailboxState
from tests.integration.conftest import (INS_ACTIVE, INS_PENDING, PASSWORD_HASH, RunningDaemon,
                                        message)
from tests.integration.test_cli import one_line_error, run

CHILD = INS_PENDING  # a child's mailbox receives mail before anyone logs into it
STRANGER = "297122B00100259"
CHILD_INBOX = f"Other Users/{CHILD}/INBOX"


@pytest.fixture
def family(relay: RunningDaemon) -> RunningDaemon:
    relay.call(relay.store.create_mailbox(STRANGER, MailboxState.ACTIVE, PASSWORD_HASH))
    relay.call(relay.store.add_guardian(CHILD, INS_ACTIVE))
    relay.deliver(message(subject="Vaccins de l'enfant"), ins=CHILD)
    return relay


def test_guardian_lists_selects_and_reads_the_childs_mail(family: RunningDaemon) -> None:
    c = family.imap()
    typ, data = c.namespace()
    assert b'(("Other Users/" "/"))' in data[0]
    typ, data = c.list('""', '"Other Users/*"')
    listed = b"\n".join(data)
    assert f'"/" "{CHILD_INBOX}"'.encode() in listed or f'"/" {CHILD_INBOX}'.encode() in listed
    assert b"\\Noselect" in listed
    # a child's folder always opens read-only: the guardian reads, nothing more
    with pytest.raises(imaplib.IMAP4.readonly):
        c.select(f'"{CHILD_INBOX}"')
    typ, data = c.select(f'"{CHILD_INBOX}"', readonly=True)
    assert typ == "OK" and data == [b"1"]
    typ, data = c.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")
    assert b"Vaccins" in data[0][1]
    typ, data = c.status(f'"{CHILD_INBOX}"', "(MESSAGES UNSEEN)")
    assert b"MESSAGES 1" in data[0] and b"UNSEEN 1" in data[0]  # still unread for the child
    assert c.store("1", "+FLAGS", "\\Deleted")[0] == "NO"
    assert c.create(f'"Other Users/{CHILD}/Mine"')[0] == "NO"  # NOPERM: the child's folders stay his
    assert c.copy("1", "INBOX")[0] == "NO"                   # keys are per mailbox
    c.logout()
    child = family.call(family.store.get_mailbox(CHILD))

    async def reads() -> list:  # type: ignore[type-arg]
        for _ in range(50):
            got = [e for e in await family.store.audit_events(child.id) if e.action == "message.read"]
            if got:
                return got
            await asyncio.sleep(0.05)
        return []

    got = family.call(reads())
    assert got and got[0].actor == f"guardian:{INS_ACTIVE}"


@pytest.mark.parametrize("name", [CHILD_INBOX, f"Other Users/{CHILD}/../{CHILD}/INBOX",
                                  f"Other Users/{INS_ACTIVE}/INBOX", "Other Users/INBOX"])
def test_nobody_else_can_open_it(family: RunningDaemon, name: str) -> None:
    c = family.imap(ins=STRANGER)
    typ, data = c.select(f'"{name}"')
    # exactly what a folder that does not exist gets: nothing tells the child exists
    assert typ == "NO" and data[0].startswith(b"[NONEXISTENT]"), data
    typ, data = c.list('""', "*")
    assert not any(CHILD.encode() in line for line in data)
    typ, data = c.status(f'"{CHILD_INBOX}"', "(MESSAGES)")
    assert typ == "NO"
    c.logout()


def test_removed_guardian_loses_access_at_once(family: RunningDaemon) -> None:
    c = family.imap()
    assert c.select(f'"{CHILD_INBOX}"', readonly=True)[0] == "OK"
    family.call(family.store.remove_guardian(CHILD, INS_ACTIVE))
    # the session that has the child's folder open is ended at its next command
    with pytest.raises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)):
        c.fetch("1", "(BODY.PEEK[])")
    c = family.imap()
    typ, _ = c.select(f'"{CHILD_INBOX}"', readonly=True)
    assert typ == "NO"
    c.logout()


def test_guardian_cli(instance) -> None:  # type: ignore[no-untyped-def]
    cfg = instance / "relay.toml"
    assert run("mailbox", "guardian", "add", CHILD, INS_ACTIVE, config=cfg).returncode == 0
    assert run("mailbox", "guardian", "list", CHILD, config=cfg).stdout.split() == [INS_ACTIVE]
    one_line_error(run("mailbox", "guardian", "add", CHILD, INS_ACTIVE, config=cfg), "already a guardian")
    one_line_error(run("mailbox", "guardian", "add", CHILD, CHILD, config=cfg), "own guardian")
    one_line_error(run("mailbox", "guardian", "add", CHILD, "160017512300140", config=cfg), "no mailbox")
    one_line_error(run("mailbox", "guardian", "add", "12345", INS_ACTIVE, config=cfg), "INS")
    assert run("mailbox", "guardian", "remove", CHILD, INS_ACTIVE, config=cfg).returncode == 0
    one_line_error(run("mailbox", "guardian", "remove", CHILD, INS_ACTIVE, config=cfg), "not a guardian")
    assert re.fullmatch(r"\s*", run("mailbox", "guardian", "list", CHILD, config=cfg).stdout)
