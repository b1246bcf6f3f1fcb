"""A message being received, sealed as it arrives (DESIGN.md §6 "bytes in flight
bounded"): an IMAP APPEND literal of up to 25 MB is never whole in memory.

Each piece is encrypted at once (crypto.BlobSealer) and written to an anonymous
temporary file (O_TMPFILE where the system has it: no name, gone with the process) in
a private directory; what reaches the disk is the sealed blob exactly as the store
keeps it, under a content key that lives only in this object's memory. Store.
deliver_spooled reads the sealed bytes back once, at commit.
"""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import IO

from mailbox_store.crypto import BlobSealer
from mailbox_store.thread import HEAD_MAX


def private_dir(path: Path) -> Path:
    """The spool directory, created 0700 (and made so when it already exists)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class SpooledMessage:
    def __init__(self, directory: Path) -> None:
        self.blob_id = uuid.uuid4().hex
        self._sealer = BlobSealer(self.blob_id)
        self._file: IO[bytes] | None = tempfile.TemporaryFile(dir=directory)
        self.size = 0  # plaintext octets received: RFC822.SIZE
        self.has_nul = False  # RFC 9051 §4.3: a literal (not literal8) holds no NUL
        self.finished = False
        # the header section's first octets, kept in clear in memory only for the
        # thread index (thread.py): bounded, and never written anywhere
        self.head = b""

    @property
    def content_key(self) -> bytes:
        return self._sealer.content_key

    def write(self, piece: bytes) -> None:
        assert self._file is not None and not self.finished
        self.size += len(piece)
        self.has_nul = self.has_nul or b"\x00" in piece
        if len(self.head) < HEAD_MAX and b"\r\n\r\n" not in self.head:
            self.head += piece[:HEAD_MAX - len(self.head)]
        self._file.write(self._sealer.update(piece))

    def finish(self) -> None:
        """Every piece written: seal the end (the GCM tag)."""
        assert self._file is not None and not self.finished
        self._file.write(self._sealer.finish())
        self._file.flush()
        self.finished = True

    def sealed(self) -> bytes:
        """The sealed blob (blocking file I/O: call it from a worker thread)."""
        assert self._file is not None and self.finished
        self._file.seek(0)
        return self._file.read()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
