"""A bounded job run at start, then every `interval` seconds, until stopped (the pruning
of QRESYNC's expunged UIDs, of ended budget windows). A run that fails is logged with
the job's event and retried at the next interval: nothing else waits on it."""
from __future__ import annotations

import asyncio

import structlog


class Periodic:
    """Subclasses set `task_name` and `failed_event` and implement `run_once`."""

    task_name = "periodic"
    failed_event = "periodic.failed"

    def __init__(self, interval: float, log: structlog.typing.FilteringBoundLogger):
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._log = log  # the job's own logger: its events keep their logger name

    async def run_once(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.task_name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the next run retries
                self._log.warning(self.failed_event, error=type(e).__name__)
            await asyncio.sleep(self.interval)
