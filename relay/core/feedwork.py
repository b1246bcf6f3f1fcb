"""Work started by committed changes (mailbox_store/feed.py): the feed calls listeners
synchronously at publish time, so a listener only decides and spawns a task; the tasks
are kept until done (an unreferenced task may be collected mid-flight)."""
from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from mailbox_store.feed import Change

if TYPE_CHECKING:
    from relay.core.runtime import Runtime


class FeedWorker(ABC):
    def __init__(self, runtime: "Runtime"):
        self.rt = runtime
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.rt.store.feed.listen(self.on_change)

    def stop(self) -> None:
        self.rt.store.feed.unlisten(self.on_change)

    @abstractmethod
    def on_change(self, change: Change) -> None:
        """Decide, cheaply, whether this change starts work (then `spawn` it)."""

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
