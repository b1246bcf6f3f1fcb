"""One IMAP worker process (imap.processes > 1): the IMAP front alone, over the daemon's
SQLite store, on the daemon's IMAP ports (SO_REUSEPORT sockets the daemon bound for
it: the kernel spreads the connections over the processes). Started and stopped by
the daemon (imapworkers.py), never by hand:

    python -m relay.daemon.imapworker CONFIG PLAIN_FD TLS_FD COMMITS_FD FOLLOW_FD

Implementation notes:
- Why processes: one daemon's IMAP is bound by its one GIL (issue 12 §3: under
  imaptest's stress its threads used 1.1 of two cores while a third of them idled).
  Each worker has its own interpreter for TLS, parsing and FETCH rendering.
- The store is the daemon's file, opened without migrating it (the daemon did, and
  holds the store lock). Writes go through this process's writer, which takes the
  shared write lock in turn with the others and sends its changes on the shared
  commit socket (mailbox_store/procfeed.py); the other processes' changes come back
  on the follow socket, in commit order.
- The worker stops on SIGTERM like the daemon's IMAP front (sessions between commands
  get BYE, a command in flight finishes, bounded by mx.shutdown_grace), and also when
  the daemon's end of the follow socket closes: it never outlives the daemon.
- SIGHUP re-reads the configuration and the certificate (what a reload applies,
  relay/core/reloadable.py); a broken file keeps the running ones.
- Its sessions' limits (per address, per account), its login throttles and its
  metrics are its own: with N processes a client may hold up to N times
  imap.max_sessions_per_ip, and /metrics shows the daemon's own IMAP sessions only.
"""
from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from mailbox_store.procfeed import CommitSender, FeedFollower
from mailbox_store.crypto import MasterKey
from relay.core import logs, reloadable
from relay.core.config import ConfigError, load_config
from relay.core.runtime import client_tls_context, open_store
from relay.daemon import storelock, tlsevents
from relay.daemon.interpreter import freeze_startup_heap
from relay.daemon.tlsbuffers import limit_tls_buffers
from relay.imap.server import ImapServer

log = structlog.get_logger("relay.imapworker")


async def serve(config_path: str, plain_fd: int, tls_fd: int, commits_fd: int, follow_fd: int) -> None:
    config = load_config(Path(config_path))
    logs.configure(config.log_level)
    limit_tls_buffers()
    tlsevents.install()
    master = MasterKey.load(config.master_key)
    imap_tls = client_tls_context(config)
    store = await open_store(config, master, upgrade=False)
    crypto = ThreadPoolExecutor(max_workers=config.workers.crypto, thread_name_prefix="crypto")
    store.executor = crypto
    lock_fd = storelock.open_write_lock(config.store_url)
    store.share_writes(lock_fd, CommitSender(socket.socket(fileno=commits_fd), store.node_id))
    stop = asyncio.Event()
    follower = FeedFollower(store.feed, store.node_id, stop.set)
    server = ImapServer(config, store, master, imap_tls)
    try:
        await follower.start(socket.socket(fileno=follow_fd))
        await server.start((socket.socket(fileno=plain_fd), socket.socket(fileno=tls_fd)))
        follower.listening()
        tlsevents.register(dict(zip(("imap", "imaps"), server.ports, strict=True)))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, _reload, server, imap_tls)
        freeze_startup_heap()
        log.info("imapworker.serving")
        await stop.wait()
        await server.stop(server.config.shutdown_grace)
        for _ in range(100):  # the sessions told BYE unwind (bounded: 1 s), not cancelled by asyncio.run
            if not server.sessions:
                break
            await asyncio.sleep(0.01)
    finally:
        await follower.stop()
        await store.close()  # commits every job already submitted
        crypto.shutdown(wait=False, cancel_futures=True)
        storelock.release(lock_fd)
        t = store.writer.times  # not on the daemon's /metrics: said here once
        log.info("imapworker.stopped", writer_batches=store.writer.batches, writer_jobs=store.writer.jobs,
                 writer_busy_s=round(t.busy, 3), writer_cpu_s=round(t.cpu, 3), writer_commit_s=round(t.commit, 3))


def _reload(server: ImapServer, imap_tls: ssl.SSLContext) -> None:
    try:
        config = load_config(server.config.path)
        imap_tls.load_cert_chain(config.tls_cert, config.tls_key)
    except (ConfigError, OSError, ValueError) as e:
        log.error("reload.failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__,
                  kept="previous configuration")
        return
    server.config = reloadable.apply(server.config, config)
    log.info("reload.done")


def main(argv: list[str]) -> int:
    if len(argv) != 5 or not all(a.isdigit() for a in argv[1:]):
        print("usage: python -m relay.daemon.imapworker CONFIG PLAIN_FD TLS_FD COMMITS_FD FOLLOW_FD "
              "(started by the daemon, imap.processes)", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(argv[0], *(int(a) for a in argv[1:])))
    except ConfigError as e:
        print(f"imap worker: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the daemon logs the exit and starts another; no traceback on stderr
        log.error("imapworker.failed", error=type(e).__name__)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
