"""Counting concurrent things per key (sessions per address, per account) against a
limit: one place for the acquire / release bookkeeping every front needs."""
from __future__ import annotations

from collections.abc import Hashable


class SlotCounter:
    def __init__(self) -> None:
        self._counts: dict[Hashable, int] = {}

    def acquire(self, key: Hashable, limit: int) -> bool:
        """Take a slot for key unless it already holds `limit`; False when refused."""
        n = self._counts.get(key, 0)
        if n >= limit:
            return False
        self._counts[key] = n + 1
        return True

    def release(self, key: Hashable) -> None:
        left = self._counts.get(key, 1) - 1
        if left > 0:
            self._counts[key] = left
        else:
            self._counts.pop(key, None)  # no entry kept for keys with nothing open

    def count(self, key: Hashable) -> int:
        return self._counts.get(key, 0)
