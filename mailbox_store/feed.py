"""In-process change feed: every committed change is published here *after* commit
(DESIGN.md §6), for IMAP IDLE, webmail refresh and notifications. A slow subscriber
loses nothing but its own backlog bound: its queue is bounded and overflow is counted."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "message.new", ...
    mailbox_id: int
    folder: str
    uid: int


class Feed:
    def __init__(self, queue_size: int = 10_000):
        self._subscribers: set[asyncio.Queue[Change]] = set()
        self._queue_size = queue_size
        self.dropped = 0

    def subscribe(self) -> "asyncio.Queue[Change]":
        q: asyncio.Queue[Change] = asyncio.Queue(self._queue_size)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: "asyncio.Queue[Change]") -> None:
        self._subscribers.discard(q)

    def publish(self, changes: list[Change]) -> None:
        for q in self._subscribers:
            for c in changes:
                try:
                    q.put_nowait(c)
                except asyncio.QueueFull:
                    self.dropped += 1
