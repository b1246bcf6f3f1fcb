"""The daemon: start the fronts, serve, reload on SIGHUP, stop cleanly on SIGTERM.

Stop sequence (SIGTERM/SIGINT): stop accepting; tell idle sessions 421 and close them;
let sessions inside a transaction finish it (bounded by mx.shutdown_grace); then close
the store, which commits everything already acknowledged. Exit status 0.
"""
from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import structlog
from sqlalchemy.exc import SQLAlchemyError

from dossier_bridge.relocate import relocate_documents
from mailbox_store.errors import StoreError
from policy.decisions import SHUTTING_DOWN
from relay.daemon import storelock, systemd, tlsevents
from relay.daemon.tlsbuffers import limit_tls_buffers
from relay.core.config import Config
from relay.daemon.admin import AdminServer
from relay.daemon.imapworkers import ImapWorkers
from relay.daemon.interpreter import freeze_startup_heap
from relay.imap.server import ImapServer, bind_listeners
from relay.core.runtime import Runtime
from relay.delivery.receipts import ReceiptSender
from relay.delivery.runner import QueueRunner
from relay.outbound.notify import Notifier
from relay.core.budgetprune import BudgetPruner, longest_window
from relay.smtp.mx import MxHandler, MxSMTP
from relay.smtp.submission import SubmissionHandler, SubmissionSMTP
from relay.web.app import WebServer

log = structlog.get_logger("relay.daemon")
SHUTDOWN_REPLY = SHUTTING_DOWN.smtp()
# Per session and command (aiosmtpd): high for the commands of a long delivery session,
# low for those that only keep a session open (NOOP, HELP, VRFY...).
COMMAND_CALL_LIMITS = {"MAIL": 100_000, "RCPT": 1_000_000, "DATA": 100_000, "RSET": 100_000,
                       "QUIT": 1, "*": 100}


class StartupError(Exception):
    """The daemon could not start (certificate, trust list, store, port); says why."""


class Daemon:
    def __init__(self, config: Config):
        self.config = config
        self.runtime: Runtime | None = None
        self.imap: ImapServer | None = None
        self.imap_workers: ImapWorkers | None = None  # imap.processes > 1 (imapworkers.py)
        self.admin: AdminServer | None = None
        self.admin_port = 0
        self._server: asyncio.base_events.Server | None = None
        self._submission: list[asyncio.base_events.Server] = []
        self.queue: QueueRunner | None = None
        self.receipts: ReceiptSender | None = None
        self.notifier: Notifier | None = None
        self.budget_pruner: BudgetPruner | None = None
        self._relocation: asyncio.Task[int] | None = None  # dossier/relocate.py, once at start
        self.web: WebServer | None = None
        self._stop = asyncio.Event()
        self._lock: int | None = None

    @property
    def mx_port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def submission_ports(self) -> tuple[int, int]:
        """(STARTTLS, implicit TLS)."""
        return tuple(s.sockets[0].getsockname()[1] for s in self._submission)  # type: ignore[return-value]

    async def start(self) -> None:
        try:
            await self._start()
        except (ValueError, OSError, SQLAlchemyError, StoreError) as e:  # StoreError: schema behind (engines.py)
            if self.imap_workers is not None:
                await self.imap_workers.stop(0)
                self.imap_workers = None
            if self.runtime is not None:
                await self.runtime.store.close()
                if self.runtime.pools is not None:
                    self.runtime.pools.shutdown()
                self.runtime = None
            storelock.release(self._lock)
            self._lock = None
            # one line: SQLAlchemy appends a "Background on this error" line
            raise StartupError((str(e).splitlines() or [type(e).__name__])[0]) from e

    async def _start(self) -> None:
        limit_tls_buffers()
        tlsevents.install()  # tls.handshake_failed on every front
        try:
            self._lock = storelock.acquire(self.config.store_url)
            storelock.mark_daemon(self._lock)
        except storelock.StoreBusy as e:
            raise ValueError(str(e)) from None
        rt = self.runtime = await Runtime.start(self.config)
        handler = MxHandler(rt)
        cfg = self.config

        def factory() -> MxSMTP:
            # the TLS context is read per connection, so a reload applies to new sessions
            return MxSMTP(handler, runtime=rt, hostname=rt.config.hostname, ident="mssante-relay",
                          tls_context=rt.tls, require_starttls=False, decode_data=False,
                          data_size_limit=rt.config.max_message_size, enable_SMTPUTF8=True,
                          timeout=rt.config.mx_timeout, command_call_limit=COMMAND_CALL_LIMITS)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(factory, cfg.mx_listen.host, cfg.mx_listen.port,
                                                reuse_address=True)
        log.info("daemon.listening", front="mx", address=f"{cfg.mx_listen.host}:{self.mx_port}")
        self.imap = ImapServer(cfg, rt.store, rt.master, rt.imap_tls)
        if cfg.imap_processes > 1:  # the workers listen first (imapworkers.py), on the ports we bound
            own = bind_listeners(cfg)
            self.imap_workers = ImapWorkers(cfg, rt.store, (own[0].getsockname()[1], own[1].getsockname()[1]))
            await self.imap_workers.start()
            await self.imap.start(own)
        else:
            await self.imap.start()
        await self._start_submission(rt)
        self.queue = QueueRunner(rt)
        self.queue.start()
        self.receipts = ReceiptSender(rt)
        self.receipts.start()
        self.notifier = Notifier(rt)
        self.notifier.start()
        self.budget_pruner = BudgetPruner(rt.store, longest_window(cfg))  # ended budget windows, hourly
        self.budget_pruner.start()
        self._relocation = asyncio.create_task(relocate_documents(rt.store, cfg.attachments), name="relocate")
        self.admin = AdminServer(rt)
        self.admin_port = await self.admin.start()
        if cfg.web is not None:
            # the webmail: IMAP's authenticator, so one failure budget covers all three fronts
            self.web = WebServer(rt, self.imap.auth, rt.imap_tls, self._client_ports)
            await self.web.start()
        tlsevents.register({"mx": self.mx_port, "web": self.web.port if self.web is not None else 0,
                            **self._client_ports()})

    def _client_ports(self) -> dict[str, int]:
        """The bound IMAP and submission ports (autoconfig; listen may say port 0)."""
        imap = self.imap.ports if self.imap is not None else (0, 0)
        sub = self.submission_ports if len(self._submission) == 2 else (0, 0)
        return {"imap": imap[0], "imaps": imap[1], "submission": sub[0], "submissions": sub[1]}

    async def _start_submission(self, rt: Runtime) -> None:
        handler = SubmissionHandler(rt)
        # IMAP's authenticator: one throttle per account and per address across both
        assert self.imap is not None
        auth = self.imap.auth
        loop = asyncio.get_running_loop()
        for listen, implicit in ((rt.config.submission_listen, False), (rt.config.submission_listen_tls, True)):
            def factory(implicit: bool = implicit) -> SubmissionSMTP:
                return SubmissionSMTP(handler, runtime=rt, authenticator=auth, hostname=rt.config.hostname,
                                      ident="mssante-relay", tls_context=None if implicit else rt.imap_tls,
                                      require_starttls=not implicit, auth_required=True, auth_require_tls=True,
                                      decode_data=False, data_size_limit=rt.config.max_message_size,
                                      enable_SMTPUTF8=True, timeout=rt.config.mx_timeout,
                                      command_call_limit=COMMAND_CALL_LIMITS,
                                      auth_exclude_mechanism=["CRAM-MD5"])
            server = await loop.create_server(factory, listen.host, listen.port, reuse_address=True,
                                              ssl=rt.imap_tls if implicit else None)
            self._submission.append(server)
            log.info("daemon.listening", front="submission" + ("s" if implicit else ""),
                     address=f"{listen.host}:{server.sockets[0].getsockname()[1]}")

    def request_stop(self) -> None:
        self._stop.set()

    def reload(self) -> bool:
        assert self.runtime is not None
        ok = self.runtime.reload()
        if ok:  # the fronts read these per session or command (relay/core/reloadable.py)
            self.config = self.runtime.config
            if self.imap is not None:
                self.imap.config = self.runtime.config
        if self.imap_workers is not None:
            self.imap_workers.reload()  # each reads the files again itself
        if ok and self.queue is not None:
            self.queue.reset_tls()  # the next delivery reads the (new) certificate and CRLs
        return ok

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for server in self._submission:
            server.close()
        rt = self.runtime
        if rt is not None:
            rt.stopping = True  # a session's next MAIL gets 421 4.3.2
        if self.imap_workers is not None:
            self.imap_workers.terminate()  # their sessions stop while ours do
        try:
            if self.web is not None:
                await self.web.stop()
            if self.admin is not None:
                await self.admin.stop()
            if self.imap is not None:
                await self.imap.stop(self.config.shutdown_grace)
            if self.imap_workers is not None:
                await self.imap_workers.stop(self.config.shutdown_grace)
            if rt is not None:
                await self._drain_sessions(rt)
            for listener in (self.receipts, self.notifier):
                if listener is not None:
                    listener.stop()
            if self.budget_pruner is not None:
                await self.budget_pruner.stop()
            if self._relocation is not None:
                self._relocation.cancel()  # resumed at the next start: rows not yet rewritten
            if self.queue is not None:
                await self.queue.stop(self.config.shutdown_grace)
        finally:
            if rt is not None:
                await rt.store.close()  # commits every job already submitted
                if rt.pools is not None:
                    rt.pools.shutdown()  # after the store: its last commits may still seal
            storelock.release(self._lock)
            self._lock = None
            if self._server is not None:
                await self._server.wait_closed()
            log.info("daemon.stopped")

    @staticmethod
    async def _drain_sessions(rt: Runtime) -> None:
        deadline = time.monotonic() + rt.config.shutdown_grace
        while rt.sessions and time.monotonic() < deadline:
            for s in list(rt.sessions):
                if not s.in_transaction:
                    if s.transport is not None and not s.transport.is_closing():
                        s.transport.write((SHUTDOWN_REPLY + "\r\n").encode("ascii"))
                        s.transport.close()
                    rt.sessions.discard(s)
            await asyncio.sleep(0.05)
        for s in list(rt.sessions):  # grace exhausted: cut; nothing of theirs was acknowledged
            if s.transport is not None:
                s.transport.close()

    async def serve_forever(self, on_ready: Callable[["Daemon"], None] | None = None) -> None:
        # The handlers are in place before the first front listens, and stay until the
        # daemon has stopped: a SIGTERM that came while the fronts were starting (a
        # supervisor stopping a daemon it just restarted) was the signal's default action,
        # the process killed (status -15, seen in tests/integration/test_crash_soak.py),
        # and so was a second one during the graceful stop. Now both are a clean stop. A
        # SIGHUP during start-up (its default action ends the process too) is kept and
        # applied once the daemon serves.
        loop = asyncio.get_running_loop()
        hup: list[bool] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, hup.append, True)
        try:
            await self.start()
            freeze_startup_heap()  # relay/daemon/interpreter.py: shorter collector pauses for the sessions
            loop.add_signal_handler(signal.SIGHUP, self._reload_notified)
            if hup:
                self._reload_notified()
            if on_ready:
                on_ready(self)
            systemd.ready(f"MX on {self.config.mx_listen.host}:{self.mx_port}")
            dog = asyncio.create_task(systemd.watchdog(), name="systemd-watchdog")
            try:
                await self._stop.wait()
            finally:
                systemd.stopping()
                await self.stop()
                dog.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def _reload_notified(self) -> None:
        systemd.reloading()
        ok = self.reload()
        systemd.ready("configuration reloaded" if ok else "reload failed: previous configuration kept")
