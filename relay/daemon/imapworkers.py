"""The daemon's IMAP worker processes (imap.processes > 1, SQLite store): the daemon's
IMAP front plus processes - 1 workers (imapworker.py) listen on the same IMAP ports
(SO_REUSEPORT: the kernel spreads the connections), each with its own interpreter and
GIL.

Implementation notes:
- Why: one daemon's IMAP is bound by its one GIL (issue 12 §3). Over PostgreSQL the
  same is done with nodes (imap.reuse_port, nodefeed.py); over SQLite the processes
  share the daemon's store file and this module wires them together.
- Not one shared listening socket: asyncio accepts up to its backlog of waiting
  connections per wake-up, so the first process to wake took every connection of a
  burst (imaptest's 10 all went to the daemon). With SO_REUSEPORT each process has its
  own queue, and a connection goes to one by a hash of its addresses.
- The workers inherit one end of the shared commit socket (every process's
  writer sends its changes on it, in commit order: mailbox_store/procfeed.py), and
  their own follow socket, on which the daemon passes every change on. From start()
  on, this process's writer takes the shared write lock (writer.py) like theirs.
- A worker that exits while the daemon serves is logged (`imapworker.exited`) and
  started again after a pause that doubles while it keeps failing (1 s to 30 s); the
  other processes go on accepting meanwhile.
- SIGHUP is passed on. At stop, the workers get SIGTERM first (their sessions get BYE,
  a command in flight finishes, within mx.shutdown_grace), the daemon's own front
  stops meanwhile, and a worker still running after the grace and 5 s is killed. The
  commit socket is read until every worker has exited: their last commits reach the
  daemon's sessions.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import structlog

from mailbox_store.procfeed import CommitSender, FeedHub
from mailbox_store.store import Store
from relay.core.config import Config
from relay.daemon import storelock
from relay.imap.server import bind_listeners

log = structlog.get_logger("relay.imapworkers")

RESTART_MIN, RESTART_MAX = 1.0, 30.0  # seconds before a worker that exited is started again
HEALTHY_AFTER = 60.0  # a worker that ran this long before exiting restarts after RESTART_MIN
KILL_AFTER = 5.0  # seconds past the grace before a worker still running is killed
READY_TIMEOUT = 30.0  # seconds start() waits for the workers to listen


class ImapWorkers:
    def __init__(self, config: Config, store: Store, ports: tuple[int, int]):
        """ports: the daemon's IMAP ports (STARTTLS, implicit TLS), bound (bind_shared)."""
        self.config = config
        self.count = config.imap_processes - 1
        self._store = store
        self._ports = ports
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._hub: FeedHub | None = None
        self._tx: socket.socket | None = None
        self._lock: int | None = None
        self.started = 0  # worker processes started, restarts included

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs.values() if p.returncode is None]

    async def start(self) -> None:
        """Start the workers; returns once each listens (or after READY_TIMEOUT, the
        late ones joining when they do), so that the daemon's own front, which
        listens after this, does not take every connection of a first burst."""
        rx, self._tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._hub = FeedHub(self._store.feed, self._store.node_id, rx)
        self._hub.start()
        self._lock = storelock.open_write_lock(self.config.store_url)
        self._store.share_writes(self._lock, CommitSender(self._tx, self._store.node_id))
        ready = [asyncio.Event() for _ in range(self.count)]
        self._tasks = [asyncio.create_task(self._keep(i, ready[i]), name=f"imapworker-{i}")
                       for i in range(self.count)]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), READY_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("imapworker.not_listening_yet", waited_s=READY_TIMEOUT)

    async def _keep(self, index: int, ready: asyncio.Event) -> None:
        """Worker `index`, started again whenever it exits while the daemon serves."""
        assert self._hub is not None and self._tx is not None
        loop = asyncio.get_running_loop()
        delay = RESTART_MIN
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        while not self._stopping:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            back, link = await self._hub.add(ours)
            listeners: tuple[socket.socket, ...] = ()
            try:
                listeners = bind_listeners(self.config, self._ports)
                fds = (*(s.fileno() for s in listeners), self._tx.fileno(), theirs.fileno())
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "relay.daemon.imapworker", str(self.config.path), *map(str, fds),
                    pass_fds=fds, env=env, stdin=asyncio.subprocess.DEVNULL)
            except OSError as e:
                log.error("imapworker.start_failed", worker=index, error=type(e).__name__)
                self._hub.remove(link)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_MAX)
                continue
            finally:
                for sock in (theirs, *listeners):
                    sock.close()  # the worker holds its own copies
            self._procs[index] = proc
            self.started += 1
            log.info("imapworker.started", worker=index, pid=proc.pid)
            since = loop.time()
            waiting = asyncio.create_task(proc.wait())
            said = asyncio.create_task(back.readline())
            await asyncio.wait((waiting, said), return_when=asyncio.FIRST_COMPLETED)
            if said.done() and not said.cancelled() and said.exception() is None and said.result() == b"listening\n":
                ready.set()
            else:
                said.cancel()
            status = await waiting
            self._hub.remove(link)
            if self._stopping:
                return
            log.error("imapworker.exited", worker=index, pid=proc.pid, status=status)
            delay = RESTART_MIN if loop.time() - since > HEALTHY_AFTER else min(delay * 2, RESTART_MAX)
            await asyncio.sleep(delay)

    def reload(self) -> None:
        for proc in list(self._procs.values()):
            if proc.returncode is None:
                proc.send_signal(signal.SIGHUP)

    def terminate(self) -> None:
        """The first step of a stop: the workers start stopping their sessions."""
        self._stopping = True
        for proc in list(self._procs.values()):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)

    async def stop(self, grace: float) -> None:
        self.terminate()
        running = [p for p in self._procs.values() if p.returncode is None]
        if running:
            done, pending = await asyncio.wait([asyncio.create_task(p.wait()) for p in running],
                                               timeout=grace + KILL_AFTER)
            for proc in running:
                if proc.returncode is None:
                    log.error("imapworker.killed", pid=proc.pid)
                    proc.kill()
            if pending:
                await asyncio.wait(pending, timeout=KILL_AFTER)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._store.writer.after_commit = None  # no one left to tell
        if self._hub is not None:
            self._hub.close()
        if self._tx is not None:
            self._tx.close()
        # the writer keeps taking shared_lock (harmless alone); its descriptor goes at exit
