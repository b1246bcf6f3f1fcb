"""IMAP listeners: 127.0.0.1:2143 (STARTTLS) and 127.0.0.1:2993 (implicit TLS) by
default; limits on sessions per address and per account; clean stop.

Stop (SIGTERM): listeners close, sessions idle between commands (or in IDLE) get
"* BYE", a command in flight finishes first (bounded by the daemon's grace)."""
from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from prometheus_client import Gauge

from mailbox_store.auditqueue import ReadAudits
from mailbox_store.crypto import MasterKey
from mailbox_store.store import MailboxInfo, Store
from mailbox_store.spool import private_dir
from relay.auth.login import Authenticator
from relay.core.config import Config
from relay.imap.budget import LiteralBudget
from relay.imap.expungeprune import ExpungedPruner
from relay.imap.fetchcache import DerivedCache
from relay.imap.idlefan import FolderFan
from relay.imap.sortkeys import SortCache
from relay.core.limits import SlotCounter

if TYPE_CHECKING:
    from relay.imap.session import Session

log = structlog.get_logger("relay.imap")

SESSIONS = Gauge("mssante_imap_sessions", "Open IMAP sessions")
T = TypeVar("T")
# Threads for long pure work of IMAP commands (SEARCH on bodies, FETCH ENVELOPE /
# BODYSTRUCTURE): few, so that many sessions share them instead of taking every core.
WORKERS = 2


def bind_shared(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT, not yet listening: the IMAP
    processes of one daemon (imap.processes) each bind one to the same port, and the
    kernel spreads the connections over those that listen."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def bind_listeners(config: Config, ports: tuple[int, int] | None = None) -> tuple[socket.socket, socket.socket]:
    """The STARTTLS and implicit-TLS sockets of one IMAP process (imap.processes),
    bound with bind_shared on the configured hosts: on the configured ports (the
    daemon's), or on `ports` (the daemon's as bound, for a worker)."""
    plain_port, tls_port = ports or (config.imap_listen.port, config.imap_listen_tls.port)
    plain = bind_shared(config.imap_listen.host, plain_port)
    try:
        return plain, bind_shared(config.imap_listen_tls.host, tls_port)
    except OSError:
        plain.close()
        raise


class ImapServer:
    def __init__(self, config: Config, store: Store, master: MasterKey, tls_context: ssl.SSLContext):
        self.config = config
        self.store = store
        self.master = master
        self.tls_context = tls_context
        self.auth = Authenticator(store, master, config.domain, config.auth)
        self.sessions: set[Session] = set()
        self._per_ip = SlotCounter()
        self._per_account = SlotCounter()
        self._servers: list[asyncio.base_events.Server] = []
        self.stopping = False
        self.stopped = asyncio.Event()
        self.literals = LiteralBudget(config.imap_max_append_bytes_per_account,
                                      config.imap_max_append_bytes_in_flight)
        # APPEND messages, sealed as they arrive (store.spool_dir: writable, unlike /etc when packaged)
        self.spool_dir = config.spool_dir or config.base_dir / "spool"
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="imap-work")
        self.sort_cache = SortCache()  # SORT/THREAD keys by message, bounded (sortkeys.py)
        self.derived_cache = DerivedCache()  # FETCH ENVELOPE/BODYSTRUCTURE by message, bounded (fetchcache.py)
        self.fan = FolderFan(store.feed)  # the feed's changes to the sessions showing their folder (idlefan.py)
        self.pruner = ExpungedPruner(store, config.imap_qresync_expunged_keep)  # QRESYNC's memory, bounded
        self.audits = ReadAudits(store.writer)  # read audits of all sessions, one writer job per group

    async def offload(self, work: Callable[[], T]) -> T:
        """Run pure, bounded work (one chunk of a command) in the IMAP worker threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def start(self, sockets: tuple[socket.socket, socket.socket] | None = None) -> None:
        """Listen on the configured addresses, or on `sockets` (STARTTLS, implicit TLS;
        bound, not yet listening: bind_listeners) when the daemon runs several IMAP
        processes (imap.processes, relay/daemon/imapworkers.py)."""
        cfg = self.config
        private_dir(self.spool_dir)
        self.pruner.start()
        limit = cfg.imap_max_line + 2
        where: list[dict[str, Any]]  # start_server's arguments, STARTTLS then implicit TLS
        if sockets is not None:
            where = [{"sock": sock} for sock in sockets]
        else:
            # imap.reuse_port: several nodes (processes over one PostgreSQL store) of one host
            # listen on the same ports, and the kernel spreads the connections (SO_REUSEPORT)
            reuse_port = cfg.imap_reuse_port or None
            where = [{"host": at.host, "port": at.port, "reuse_address": True, "reuse_port": reuse_port}
                     for at in (cfg.imap_listen, cfg.imap_listen_tls)]
        plain = await asyncio.start_server(lambda r, w: self._serve(r, w, tls=False), limit=limit, **where[0])
        implicit = await asyncio.start_server(lambda r, w: self._serve(r, w, tls=True), limit=limit,
                                              ssl=self.tls_context, **where[1])
        self._servers = [plain, implicit]
        log.info("daemon.listening", front="imap", address=f"{cfg.imap_listen.host}:{self.ports[0]}")
        log.info("daemon.listening", front="imaps", address=f"{cfg.imap_listen_tls.host}:{self.ports[1]}")

    @property
    def ports(self) -> tuple[int, int]:
        return tuple(s.sockets[0].getsockname()[1] for s in self._servers)  # type: ignore[return-value]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool) -> None:
        from relay.imap.session import Session  # the session module imports the parser stack

        ip = (writer.get_extra_info("peername") or ("?",))[0]
        if self.stopping or not self._per_ip.acquire(ip, self.config.imap_max_sessions_per_ip):
            writer.write(b"* BYE too many connections from your address\r\n")
            writer.close()
            return
        session = Session(self, reader, writer, tls)
        self.sessions.add(session)
        SESSIONS.inc()
        try:
            await session.run()
        finally:
            SESSIONS.dec()
            self._per_ip.release(ip)

    def admit_account(self, session: "Session", mailbox: MailboxInfo) -> bool:
        return self._per_account.acquire(mailbox.id, self.config.imap_max_sessions_per_account)

    def forget(self, session: "Session") -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            user = session.user
            if user is not None:
                self._per_account.release(user.id)

    async def audit_read(self, session: "Session", count: int) -> None:
        """Every read of message content is audited (issue 4, DESIGN.md §4): the
        rows of every session join one writer job of the next group (auditqueue.py);
        waits only when the writer is far behind (the queue is bounded)."""
        sel, user = session.selected, session.user
        if sel is None or user is None:
            return
        await self.audits.add(sel.owner.id, "patient" if sel.owner.id == user.id else f"guardian:{user.ins}",
                        "message.read", f"{sel.name}: {count} message(s)", session.peer)

    async def stop(self, grace: float) -> None:
        self.stopping = True
        for server in self._servers:
            server.close()
        self.stopped.set()  # IDLE sessions answer BYE at once
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline:
            for session in list(self.sessions):
                if not session.busy and not session.writer.is_closing():
                    try:
                        session.writer.write(b"* BYE server shutting down\r\n")
                    except (ConnectionError, RuntimeError):
                        pass
                    session.writer.close()
            if not any(session.busy for session in self.sessions):
                break
            await asyncio.sleep(0.05)
        for server in self._servers:
            await server.wait_closed()
        await self.audits.flush()  # before the store closes: no read audit lost
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.fan.stop()
        await self.pruner.stop()
