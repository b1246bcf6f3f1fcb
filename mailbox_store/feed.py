"""In-process change feed: every committed change is published here *after* commit
(DESIGN.md §6), for IMAP IDLE, webmail refresh and notifications.

Two ways to listen: a bounded queue (a slow subscriber loses only its own backlog;
overflow is counted), or a synchronous callback run at publish time, which must be
cheap (IMAP sessions: 2,000 idle sessions cost 2,000 tasks and queues otherwise).
A change carries what listeners need to show it (the new message's metadata, the new
flags), so 2,000 sessions told of one delivery do not each ask the database again."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("mailbox_store.feed")


@dataclass(frozen=True, slots=True)
class MessageMeta:
    uid: int
    flags: frozenset[str]
    internal_date: dt.datetime
    size: int
    modseq: int = 0  # RFC 7162: the message's MODSEQ (0: not known to the publisher)


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "message.new", "message.flags", "message.expunged", "folder.*"
    mailbox_id: int
    folder: str
    uid: int
    meta: MessageMeta | None = None  # message.new: the message as a session lists it
    flags: frozenset[str] | None = None  # message.flags: the flags after the change
    modseq: int = 0  # RFC 7162: the folder's modseq this change got (0: none)
    remote: bool = False  # made by another node (nodefeed.py): no metadata, not ours to act on


class Feed:
    def __init__(self, queue_size: int = 10_000):
        self._subscribers: set[asyncio.Queue[Change]] = set()
        self._callbacks: set[Callable[[Change], None]] = set()
        self._queue_size = queue_size
        self.dropped = 0

    def subscribe(self) -> "asyncio.Queue[Change]":
        q: asyncio.Queue[Change] = asyncio.Queue(self._queue_size)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: "asyncio.Queue[Change]") -> None:
        self._subscribers.discard(q)

    def listen(self, callback: Callable[[Change], None]) -> None:
        self._callbacks.add(callback)

    def unlisten(self, callback: Callable[[Change], None]) -> None:
        self._callbacks.discard(callback)

    def publish(self, changes: list[Change]) -> None:
        for cb in list(self._callbacks):
            for c in changes:
                try:
                    cb(c)
                except Exception as e:  # one listener's bug must not stop the others
                    log.error("feed.listener_failed", error=type(e).__name__)
        for q in self._subscribers:
            for c in changes:
                try:
                    q.put_nowait(c)
                except asyncio.QueueFull:
                    self.dropped += 1
