"""The change feed across the processes of one daemon over one SQLite store
(`imap.processes` > 1, relay/daemon/imapworkers.py). Over PostgreSQL, nodes hear each
other by NOTIFY (nodefeed.py); this is the same idea on one host without a server.

Implementation notes:
- Every process's writer sends its transaction's changes (`CommitSender`, the writer's
  `after_commit` hook) on one shared datagram socket, after COMMIT and before it lets
  the next process's writer in (writer.py's `shared_lock`). The daemon reads that one
  socket (`FeedHub`), so it receives every process's changes in commit order, which
  is the order in which each folder's modification sequences were given: a session
  never hears of modseq n+1 before n (a HIGHESTMODSEQ told too early, RFC 7162).
- The daemon publishes the other processes' changes on its own feed, and passes every
  payload on, in the same order, to each worker over the worker's own stream socket
  (`FeedFollower` publishes them there). A process skips its own payloads: it
  published them at commit (writer.py).
- The payload is nodefeed's (kind, mailbox, folder, UID, modseq, and the node that
  made it; no flags, no metadata, no health content), one JSON object per datagram and
  per line. What arrives is published marked `remote`: IMAP sessions read what
  changed from the store, which already holds it (it was sent after COMMIT).
- Bounds: a datagram socket's queue is short (net.unix.max_dgram_qlen); a writer whose
  send finds it full waits for the daemon to read, up to SEND_TIMEOUT, then drops that
  payload (logged): sessions elsewhere then see the change at their next command that
  reads the folder. A worker that does not read its stream (MAX_BUFFERED waiting) has
  its link closed: it stops on EOF and the daemon starts another.
"""
from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import structlog

from mailbox_store.feed import Change, Feed
from mailbox_store.nodefeed import decode, encode

log = structlog.get_logger("mailbox_store.procfeed")

SEND_TIMEOUT = 5.0  # seconds a writer waits for room on the shared socket
MAX_BUFFERED = 32 * 1024 * 1024  # bytes waiting for one worker before its link is cut
MAX_DATAGRAM = 65_536  # nodefeed.encode's payloads are at most 7,000 bytes
MAX_LINE = 65_536


def _republish(feed: Feed, own_node: str, payload: bytes) -> int | None:
    """Another process's changes in `payload`, published on this process's feed marked
    remote; how many (0: this process's own, published at its commit), None when the
    payload is not one (logged)."""
    try:
        node, changes = decode(payload.decode("ascii"))
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        log.warning("procfeed.bad_payload", error=type(e).__name__)
        return None
    if node == own_node:
        return 0
    feed.publish(changes)
    return len(changes)


class CommitSender:
    """The writer's after-commit hook (run in its thread, while it holds the shared
    lock): this transaction's changes onto the shared datagram socket."""

    def __init__(self, sock: socket.socket, node: str):
        sock.settimeout(SEND_TIMEOUT)  # every holder of the socket sets the same: one file
        self._sock = sock
        self._node = node
        self.lost = 0

    def __call__(self, changes: list[Change]) -> None:
        for payload in encode(self._node, changes):
            try:
                self._sock.send(payload.encode("ascii"))
            except OSError as e:  # timeout (the daemon does not read), or the daemon is gone
                self.lost += 1
                log.error("procfeed.send_failed", error=type(e).__name__, lost=self.lost)

    def close(self) -> None:
        self._sock.close()


class FeedHub:
    """The daemon's end: every process's changes in commit order, published here when
    they are another process's, and passed on to every worker."""

    def __init__(self, feed: Feed, node: str, rx: socket.socket):
        rx.setblocking(False)
        self._feed = feed
        self._node = node
        self._rx = rx
        self._links: set[asyncio.StreamWriter] = set()
        self.received = 0

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self._rx.fileno(), self._readable)

    async def add(self, sock: socket.socket) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A worker's stream: what arrives from now on is passed to it. The worker
        writes one line back when it listens (FeedFollower.listening)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE)
        self._links.add(writer)
        return reader, writer

    def remove(self, writer: asyncio.StreamWriter) -> None:
        self._links.discard(writer)
        writer.close()

    def _readable(self) -> None:
        while True:
            try:
                data = self._rx.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.error("procfeed.receive_failed", error=type(e).__name__)
                return
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        heard = _republish(self._feed, self._node, data)
        if heard is None:
            return  # not a payload: passed on to no one
        self.received += heard
        line = data + b"\n"
        for link in list(self._links):
            if link.transport.get_write_buffer_size() > MAX_BUFFERED:
                log.error("procfeed.worker_not_reading", buffered=link.transport.get_write_buffer_size())
                self.remove(link)  # the worker sees EOF and stops; the daemon starts another
                continue
            link.write(line)

    def close(self) -> None:
        try:
            asyncio.get_running_loop().remove_reader(self._rx.fileno())
        except RuntimeError:  # no loop any more: nothing registered on it
            pass
        for link in list(self._links):
            self.remove(link)
        self._rx.close()


class FeedFollower:
    """A worker's end: the payloads the daemon passes on, published here when they
    are another process's. `on_lost` runs once when the daemon's end closes."""

    def __init__(self, feed: Feed, node: str, on_lost: Callable[[], None]):
        self._feed = feed
        self._node = node
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self.received = 0

    async def start(self, sock: socket.socket) -> None:
        reader, self._writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE)
        self._task = asyncio.create_task(self._run(reader), name="procfeed-follower")

    async def _run(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                log.error("procfeed.line_too_long")
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            self.received += _republish(self._feed, self._node, line) or 0
        self._on_lost()  # the daemon's end closed (not a stop: that cancels the task)

    def listening(self) -> None:
        """Tell the daemon this worker accepts connections (FeedHub.add's reader)."""
        self._writer.write(b"listening\n")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._writer.close()
