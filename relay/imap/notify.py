"""NOTIFY (RFC 5465): the client names the mailboxes it wants to hear of and the events,
and the server tells them without being asked: the selected mailbox's changes as
usual (EXISTS, EXPUNGE, FETCH), the other folders' as untagged STATUS responses.

Implementation notes:
- Supported: the filters SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED,
  SUBTREE and MAILBOXES over the user's own folders; the events MessageNew (without
  fetch attributes), MessageExpunge and FlagChange. Any other event is refused
  NO [BADEVENT (...)] naming those we support (RFC 5465 §5).
- The session listens to its own mailbox's changes through the IMAP fan-out
  (idlefan.py, by mailbox id): the callback only notes which folder changed how and
  wakes the session; the STATUS is read from the store after the next command, or at
  once in IDLE (bounded: at most MAX_PENDING folders remembered, the rest dropped
  until the next change).
- A change to the selected folder is not told as STATUS: SELECTED's updates already
  tell it (RFC 5465 §5.1); SELECTED with events NONE is not supported (the selected
  folder's updates are always sent, as IMAP4rev1 requires of EXISTS and EXPUNGE).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailbox_store.feed import Change
from relay.imap.parser import Parser
from relay.imap.replies import no, ok
from relay.imap.statusline import status_line

if TYPE_CHECKING:
    from relay.imap.replies import Reply
    from relay.imap.session import Session

SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange")
KNOWN = {e.upper(): e for e in SUPPORTED + ("AnnotationChange", "MailboxName", "SubscriptionChange",
                                            "MailboxMetadataChange", "ServerMetadataChange")}
KIND_EVENT = {"message.new": "MESSAGENEW", "message.expunged": "MESSAGEEXPUNGE", "message.flags": "FLAGCHANGE"}
MAX_PENDING = 1000  # folders with an untold change remembered per session
MAX_GROUPS = 32  # event groups in one NOTIFY SET


class BadEvent(Exception):
    """An event we do not support: NO [BADEVENT (the ones we do)] (RFC 5465 §5)."""


@dataclass(frozen=True, slots=True)
class Group:
    filter: str  # SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED, SUBTREE, MAILBOXES
    names: tuple[str, ...]  # SUBTREE / MAILBOXES
    events: frozenset[str]  # upper-cased; empty: NONE


@dataclass
class Notify:
    groups: list[Group]
    mailbox_id: int
    subscribed: set[str] = field(default_factory=set)
    pending: dict[str, set[str]] = field(default_factory=dict)  # folder -> events not told yet
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def group_for(self, folder: str) -> Group | None:
        """The first non-selected group whose filter covers folder (RFC 5465 §6: the
        first matching group applies)."""
        for g in self.groups:
            if g.filter in ("SELECTED", "SELECTED-DELAYED"):
                continue
            if (g.filter == "PERSONAL" or (g.filter == "INBOXES" and folder == "INBOX")
                    or (g.filter == "SUBSCRIBED" and folder in self.subscribed)
                    or (g.filter == "MAILBOXES" and folder in g.names)
                    or (g.filter == "SUBTREE" and any(folder == n or folder.startswith(n + "/") for n in g.names))):
                return g
        return None


def parse(p: Parser) -> tuple[bool, list[Group]] | None:
    """NOTIFY NONE (None) or NOTIFY SET [STATUS] event-groups: (status, groups), RFC 5465 §8."""
    p.sp()
    if p.take(b"NONE"):
        p.end()
        return None
    p.expect(b"SET")
    status = p.take(b" STATUS")
    groups: list[Group] = []
    while not p.at_end():
        p.sp()
        p.expect(b"(")
        word = p.atom().upper()
        names: tuple[str, ...] = ()
        if word in ("SUBTREE", "MAILBOXES"):
            p.sp()
            if p.take(b"("):
                found = [p.mailbox()]
                while not p.take(b")"):
                    p.sp()
                    found.append(p.mailbox())
                names = tuple(found)
            else:
                names = (p.mailbox(),)
        elif word not in ("SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED"):
            raise p.error(f"filtre NOTIFY inconnu / unknown NOTIFY filter {word[:20]!a}")
        p.sp()
        events: set[str] = set()
        if not p.take(b"NONE"):
            p.expect(b"(")
            while True:
                event = p.atom().upper()
                if event not in KNOWN:
                    raise p.error(f"evenement NOTIFY inconnu / unknown NOTIFY event {event[:20]!a}")
                if event == "MESSAGENEW" and p.has_prefix(b" ("):
                    raise BadEvent("MessageNew avec attributs / MessageNew with fetch attributes")
                events.add(event)
                if p.take(b")"):
                    break
                p.sp()
        p.expect(b")")
        if not events.issubset({e.upper() for e in SUPPORTED}):
            raise BadEvent(", ".join(sorted(events)))
        if word.startswith("SELECTED") and not events:
            raise BadEvent("SELECTED NONE")
        # RFC 5465 §5: MessageNew and MessageExpunge go together for the selected mailbox
        if word.startswith("SELECTED") and len(events & {"MESSAGENEW", "MESSAGEEXPUNGE"}) == 1:
            raise p.error("MessageNew et MessageExpunge ensemble / MessageNew and MessageExpunge together")
        groups.append(Group(word, names, frozenset(events)))
        if len(groups) > MAX_GROUPS:
            raise p.error("trop de groupes NOTIFY / too many NOTIFY event groups")
    if not groups:
        raise p.error("groupe NOTIFY attendu / expected a NOTIFY event group")
    return status, groups


def on_change(s: "Session", change: Change) -> None:
    """Called by the fan-out at publish time: note the change, wake the session; no I/O."""
    n = s.notify
    if n is None or change.mailbox_id != n.mailbox_id:
        return
    event = KIND_EVENT.get(change.kind)
    sel = s.selected
    if event is None or (sel is not None and sel.owner.id == n.mailbox_id and sel.name == change.folder):
        return
    g = n.group_for(change.folder)
    if g is None or event not in g.events:
        return
    if change.folder not in n.pending and len(n.pending) >= MAX_PENDING:
        return
    n.pending.setdefault(change.folder, set()).add(event)
    n.wake.set()


def status_items(events: set[str] | frozenset[str]) -> list[str]:
    """What a STATUS tells of these events (RFC 5465 §5), in one fixed order. A
    flag change shows in HIGHESTMODSEQ, as Dovecot tells it (we support CONDSTORE)."""
    items: list[str] = []
    if events & {"MESSAGENEW", "MESSAGEEXPUNGE"}:
        items.append("MESSAGES")
    if "MESSAGENEW" in events:
        items.append("UIDNEXT")
    if events & {"MESSAGENEW", "FLAGCHANGE"}:
        items.append("UIDVALIDITY")
    if "FLAGCHANGE" in events:
        items.append("HIGHESTMODSEQ")
    return items


async def status_lines(s: "Session", folders: dict[str, set[str]]) -> list[bytes]:
    """STATUS responses for these folders of the user's own mailbox (gone ones: none)."""
    assert s.user is not None
    out: list[bytes] = []
    for name, events in folders.items():
        f = await s.server.store.folder(s.user.id, name)
        if f is not None:
            out.append(await status_line(s, s.user, f, name, status_items(events)))
    return out


async def pending_lines(s: "Session") -> list[bytes]:
    """The STATUS responses owed for the changes noted since the last call."""
    n = s.notify
    if n is None:
        return []
    n.wake.clear()
    if not n.pending:
        return []
    pending, n.pending = n.pending, {}
    return await status_lines(s, pending)


async def initial_lines(s: "Session", n: Notify) -> list[bytes]:
    """NOTIFY SET STATUS: a STATUS of every folder a non-selected group covers, now
    (RFC 5465 §3)."""
    assert s.user is not None
    sel = s.selected
    wanted: dict[str, set[str]] = {}
    for f in await s.server.store.folders(s.user.ins):
        if sel is not None and sel.owner.id == s.user.id and sel.name == f.name:
            continue
        g = n.group_for(f.name)
        if g is not None and g.events:
            wanted[f.name] = set(g.events)
    return await status_lines(s, wanted)


async def cmd_notify(s: "Session", tag: str, p: Parser, uid: bool) -> "Reply":
    """NOTIFY NONE / NOTIFY SET [STATUS] event-groups (RFC 5465 §3)."""
    assert s.user is not None
    try:
        parsed = parse(p)
    except BadEvent:
        return no("evenement non pris en charge / unsupported event",
                  "BADEVENT (" + " ".join(SUPPORTED) + ")")
    stop(s)
    if parsed is None:
        return ok("NOTIFY done")
    status, groups = parsed
    n = Notify(groups, s.user.id)
    if any(g.filter == "SUBSCRIBED" for g in groups):
        n.subscribed = await s.server.store.subscriptions(s.user.id)
    s.notify = n
    s.server.fan.move_mailbox(s.on_notify_change, None, s.user.id)
    if status:
        await s.send(*await initial_lines(s, n))
    return ok("NOTIFY done")


def stop(s: "Session") -> None:
    """No more notifications for this session (NOTIFY NONE, a new NOTIFY SET, LOGOUT)."""
    if s.notify is not None:
        s.server.fan.move_mailbox(s.on_notify_change, s.notify.mailbox_id, None)
        s.notify = None
