"""The unwrapped keys of the mailboxes recently used, bounded (issue 15 §5).

Unwrapping a mailbox's data key costs a query and an AES key unwrap, so the store keeps
the result; it used to keep it forever, one entry per mailbox ever touched (a million
patients: a million keys in memory, and every patient's key readable in a core dump).
Now at most `size` mailboxes' keys are kept, the least recently used dropped first;
a dropped key is unwrapped again at its next use.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


@dataclass(frozen=True)
class MailboxKeys:
    """What the store derives from one mailbox's data key."""
    aead: AESGCM  # seals the mailbox's rows and wraps its content keys
    dedupe: bytes  # HMAC key of the dossier's dedupe digests (documents.py)
    thread: bytes  # HMAC key of the thread keys (thread.py)


class KeyCache:
    def __init__(self, size: int):
        if size < 1:
            raise ValueError("key cache size must be >= 1")
        self.size = size
        self._keys: collections.OrderedDict[int, MailboxKeys] = collections.OrderedDict()

    def get(self, mailbox_id: int) -> MailboxKeys | None:
        keys = self._keys.get(mailbox_id)
        if keys is not None:
            self._keys.move_to_end(mailbox_id)
        return keys

    def put(self, mailbox_id: int, keys: MailboxKeys) -> None:
        self._keys[mailbox_id] = keys
        self._keys.move_to_end(mailbox_id)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)
