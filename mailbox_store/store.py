"""The store API: the only way protocol code reads or writes mailboxes.

Implementation notes:
- Writes go through the single `Writer` (group commit); reads use pooled connections,
  which SQLite's WAL lets run beside the writer without blocking it.
- Durability (SQLite): journal_mode=WAL with synchronous=FULL makes every COMMIT fsync
  the WAL before it returns, so a committed delivery survives a crash or a power cut
  (with NORMAL, WAL commits may be lost on power failure). busy_timeout makes a
  process wait for another's lock instead of failing at once.
- Bodies are sealed before they reach the writer (crypto.py): the writer only inserts.
  A message to several patients is one blob; each recipient's row holds its own
  wrapped copy of the blob's content key.
- The schema is brought up to date at open by Alembic (migrate.py), through the writer.
- Store is composed of repositories (repository.py: folders, messages, documents, ...)
  that share one core and one keyring (core.py); its public methods are theirs,
  delegated under the same names and signatures. No repository imports this module.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import inspect
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (URL, Connection, Engine, bindparam, create_engine, delete, event, insert, select,
                        update)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mailbox_store import engines, imapreads, migrate, receiptreads
from mailbox_store.audit import creation_audit
from mailbox_store.cache import MailboxCache
from mailbox_store.crypto import MasterKey, new_data_key, open_blob, seal_blob, seal_blob_parts, wrap_content_key
from mailbox_store.core import INLINE_CRYPTO_MAX, Keyring, StoreCore
from mailbox_store.keycache import KeyCache, MailboxKeys
from mailbox_store.conversations import ConversationOps, apply_effects
from mailbox_store.outbound import PreparedOutgoing, QueueOps
from mailbox_store.queue_claim import ClaimOps
from mailbox_store.budgets import BudgetOps
from mailbox_store.nodefeed import NodeFeedListener, listen_dsn, notifier
from mailbox_store.pages import PageOps
from mailbox_store.pro_access import ProAccessOps
from mailbox_store.prepared import Prepared, driver_sql, prepared_insert
from mailbox_store.documents import DocumentOps, NewDocument, SealedDocuments, insert_documents_together
from mailbox_store.feed import Change, Feed, MessageMeta
from mailbox_store.folders import FolderInfo, FolderOps, delete_orphan_blobs
from mailbox_store.messages import MessageOps
from mailbox_store.reader import READ_THREADS, Reader
from mailbox_store.modseq import bump, record_expunged
from mailbox_store.models import (DEFAULT_FOLDERS, AuditEvent, Blob, Folder, Guardian, Mailbox, Message,
                                  ReceiptRequest, Subscription, utc)
from mailbox_store.recent import RecentOps
from mailbox_store.records import AuditRecord, MailboxInfo, mailbox_info
from mailbox_store.repository import Repository
from mailbox_store.errors import StoreError
from mailbox_store.spool import SpooledMessage
from mailbox_store.thread import HEAD_MAX, ThreadOps, thread_key, thread_root_of
from mailbox_store.writer import GroupJob, Writer
from policy.conversation import ConversationEffects
from policy.recipients import MailboxState



# Spooled messages (IMAP APPEND) whose sealed bytes are in memory at once, read back
# for their commit: the memory an APPEND flood can take is this times 25 MB (x2 while
# SQLite copies the bound value), whatever the number of sessions.
SPOOLED_COMMITS = 2
T = TypeVar("T")


class MailboxExists(StoreError):
    pass


class NoSuchMailbox(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class MessageInfo:
    uid: int
    size: int
    flags: tuple[str, ...]
    internal_date: dt.datetime


@dataclass(frozen=True, slots=True)
class Delivered:
    mailbox_id: int
    folder: str
    uid: int


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _sync_url(url: str) -> URL:
    """The synchronous driver of the same database, for the writer thread."""
    return engines.sync_url(url)


# Page size of a NEW SQLite database (an existing one keeps its own: SQLite cannot
# change it in WAL mode). A stored message is one sealed blob written twice (the WAL,
# then the checkpoint), two system calls per page each way: with 4 KiB pages a 500 KB
# message cost about 500 of them. 16 KiB pages cut the writer's CPU per 500 KB blob from
# about 1.0 to 0.75 ms (user + system, measured alone with synchronous=FULL), and left
# 10 KB deliveries as they were (a commit writes a few more KiB per touched page).
SQLITE_PAGE_SIZE = 16384


def _install_sqlite_pragmas(engine: Engine, busy_timeout_ms: int, cache_kib: int = 2000, begin: bool = True) -> None:
    """begin=False: the engine's user BEGINs itself (the Reader, on the DBAPI connection)."""
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, emit BEGIN, so SAVEPOINTs work
        # (SQLAlchemy docs, "Serializable isolation / Savepoints" for pysqlite/aiosqlite).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # before WAL: a new file only
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        cur.close()

    if not begin:
        return

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # The writer takes the write lock at BEGIN: a deferred transaction that upgrades
        # later can fail at once with SQLITE_BUSY_SNAPSHOT, which busy_timeout cannot cure.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        if conn.dialect.is_async:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        else:  # the writer's every batch: on the DBAPI cursor, errors wrapped alike (prepared.py)
            driver_sql(conn, "BEGIN IMMEDIATE" if immediate else "BEGIN")


def _migrate(conn: Connection) -> tuple[None, list[Change]]:
    migrate.upgrade(conn)
    return None, []


# The delivery group's statements, built once with bound parameters: building a
# statement and its cache key in the writer thread, at every batch, held the GIL the
# MX's event loop was waiting for (issue 15, py-spy at 10 KB).
# The two that are not INSERTs run on the DBAPI cursor (prepared.py, issue 12 §3: APPEND).
_FOLDERS_TO_FILL = Prepared(select(Folder.id, Folder.mailbox_id, Folder.uidnext)
                            .where(Folder.name == bindparam("folder"),
                                   Folder.mailbox_id.in_(bindparam("ids", expanding=True)))
                            .order_by(Folder.id).with_for_update())
_SET_UIDNEXT = Prepared(update(Folder).where(Folder.id == bindparam("fid")).values(uidnext=bindparam("new_uidnext")))
_INSERT_RECEIPTS = insert(ReceiptRequest)
# every delivery and APPEND runs these two (a batch at a time), on the DBAPI cursor (prepared.py)
_P_INSERT_BLOBS = prepared_insert(Blob, ("id", "sealed"))
_P_INSERT_MESSAGES = prepared_insert(Message, ("folder_id", "uid", "blob_id", "key_wrapped", "flags", "internal_date",
                                               "size", "thread_key", "modseq"))


@dataclass
class _Delivery(GroupJob):
    """One message into one folder of each of its mailboxes (sealed beforehand)."""

    blob_id: str
    sealed: bytes  # the message, sealed once with its content key
    size: int  # of the plaintext: RFC822.SIZE
    keys: list[tuple[MailboxInfo, bytes]]  # (mailbox, content key sealed for it)
    folder: str
    flags: str
    when: dt.datetime
    documents: SealedDocuments  # filed in the same transaction as the message
    conversation: ConversationEffects | None  # a professional message's, for each mailbox
    receipt: tuple[str, str | None] | None  # requested read receipt: (address, Message-ID)
    threads: dict[int, str] = field(default_factory=dict)  # mailbox id -> thread key (thread.py)
    # messages of ours that answer this one (the TEST acknowledgement): queued in the
    # same transaction, so a refused commit leaves no answer behind (relay/inbound)
    outgoing: Sequence[PreparedOutgoing] = ()

    @classmethod
    def apply_group(cls, conn: Connection, jobs: list["_Delivery"]) -> list[tuple[Any, list[Change]]]:
        # UIDs: each folder's UIDNEXT advances by the number of messages it receives in
        # this batch; each message takes the next UID of that range, in submission order
        # (RFC 3501 §2.3.1.1: strictly ascending, never reused). A constant number of
        # statements per batch: one SELECT (rows locked on PostgreSQL; SQLite's writer
        # already holds the database lock since BEGIN IMMEDIATE) and one executemany.
        wanted: dict[tuple[int, str], int] = {}
        for job in jobs:
            for mb, _ in job.keys:
                wanted[(mb.id, job.folder)] = wanted.get((mb.id, job.folder), 0) + 1
        next_uid: dict[tuple[int, str], tuple[int, int]] = {}  # -> (folder id, next uid)
        # the same lock order on every node (folder name, then id): no deadlock (rowlocks.py)
        for folder in sorted({f for _, f in wanted}):
            ids = [m for m, f in wanted if f == folder]
            for fid, mailbox_id, uidnext in _FOLDERS_TO_FILL.all(conn, {"folder": folder, "ids": ids}):
                next_uid[(mailbox_id, folder)] = (fid, uidnext)
        missing = set(wanted) - set(next_uid)
        if missing:
            raise StoreError(f"no folder {sorted(missing)[0][1]} in mailbox {sorted(missing)[0][0]}")
        _SET_UIDNEXT.execute(conn, [{"fid": next_uid[k][0], "new_uidnext": next_uid[k][1] + n}
                                    for k, n in wanted.items()])
        # RFC 7162: one new modseq per folder for the whole batch (modseq.py); their rows
        # are locked since _FOLDERS_TO_FILL (FOR UPDATE)
        modseq = bump(conn, [fid for fid, _ in next_uid.values()], locked=True)
        blobs, messages, results = [], [], []
        for job in jobs:
            blobs.append({"id": job.blob_id, "sealed": job.sealed})
            out: list[Delivered] = []
            for mb, key_wrapped in job.keys:
                fid, uid = next_uid[(mb.id, job.folder)]
                next_uid[(mb.id, job.folder)] = (fid, uid + 1)
                messages.append({"folder_id": fid, "uid": uid, "blob_id": job.blob_id,
                                 "key_wrapped": key_wrapped, "flags": job.flags,
                                 "internal_date": job.when, "size": job.size,
                                 "thread_key": job.threads.get(mb.id), "modseq": modseq[fid]})
                out.append(Delivered(mb.id, job.folder, uid))
            meta_flags = frozenset(job.flags.split())
            results.append((out, [Change("message.new", d.mailbox_id, d.folder, d.uid,
                                         meta=MessageMeta(d.uid, meta_flags, job.when, job.size,
                                                          modseq[next_uid[(d.mailbox_id, d.folder)][0]]),
                                         modseq=modseq[next_uid[(d.mailbox_id, d.folder)][0]]) for d in out]))
        _P_INSERT_BLOBS.execute(conn, blobs)
        _P_INSERT_MESSAGES.execute(conn, messages)
        for (_, changes), (_, filed) in zip(results, insert_documents_together(conn, [j.documents for j in jobs]),
                                            strict=True):
            changes.extend(filed)
        apply_effects(conn, [(mb.id, job.conversation, job.when) for job in jobs if job.conversation is not None
                             for mb, _ in job.keys])
        receipts = [{"mailbox_id": mb.id, "blob_id": job.blob_id, "address": job.receipt[0],
                     "message_id": job.receipt[1], "sent_at": None}
                    for job in jobs if job.receipt is not None for mb, _ in job.keys]
        if receipts:
            conn.execute(_INSERT_RECEIPTS, receipts)
        for job, (_, changes) in zip(jobs, results, strict=True):
            for prepared in job.outgoing:
                changes.extend(prepared.apply(conn)[1])
        return results


# Store.deliver's default: the thread root is read from the message's bytes
ROOT_FROM_BYTES = object()


# Store's repositories (repository.py), by the attribute that holds each. Their public
# methods are Store's (delegated, _delegate_to_repositories), in this order of
# precedence, after Store's own.
REPOSITORIES: dict[str, type[Repository]] = {
    "folder_ops": FolderOps, "message_ops": MessageOps, "document_ops": DocumentOps,
    "conversation_ops": ConversationOps, "queue_ops": QueueOps, "page_ops": PageOps,
    "pro_access_ops": ProAccessOps, "thread_ops": ThreadOps, "recent_ops": RecentOps,
    "claim_ops": ClaimOps, "budget_ops": BudgetOps, "imap_read_ops": imapreads.ImapReadOps,
}
C = TypeVar("C", bound=type)


def _delegate(attr: str, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def call_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await getattr(getattr(self, attr), name)(*args, **kwargs)
        return call_async

    @functools.wraps(fn)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(getattr(self, attr), name)(*args, **kwargs)
    return call


def _delegate_to_repositories(cls: C) -> C:
    """Give Store each repository's public methods, same names and signatures
    (functools.wraps keeps them for inspect and help()), so that no caller changes."""
    for attr, repo in REPOSITORIES.items():
        for name, member in vars(repo).items():
            if name.startswith("_") or hasattr(cls, name):
                continue
            if inspect.isfunction(member):
                setattr(cls, name, _delegate(attr, name, member))
            elif isinstance(member, property):  # read-only facts (budgets.shared_budgets)
                setattr(cls, name, property(functools.partial(_read_property, attr, name), doc=member.__doc__))
    return cls


def _read_property(attr: str, name: str, store: Any) -> Any:
    return getattr(getattr(store, attr), name)


if TYPE_CHECKING:
    # for type checkers only: Store offers every repository's public methods
    class _RepositoryMethods(FolderOps, MessageOps, DocumentOps, ConversationOps, QueueOps, PageOps,
                             ProAccessOps, ThreadOps, RecentOps, ClaimOps, BudgetOps, imapreads.ImapReadOps):
        pass
else:
    _RepositoryMethods = object


@_delegate_to_repositories
class Store(_RepositoryMethods):
    node_listener: NodeFeedListener | None = None  # PostgreSQL: other nodes' changes (nodefeed.py)

    def __init__(self, engine: AsyncEngine, write_engine: Engine, master: MasterKey, feed: Feed,
                 max_batch: int = 64, mailbox_cache_ttl: float = 0.0, read_engine: Engine | None = None,
                 key_cache: int = 10_000):
        self.engine = engine
        # the webmail's reads, one thread hop each (reader.py); the same database
        self.reader = Reader(read_engine or create_engine(write_engine.url, pool_size=READ_THREADS, max_overflow=0))
        self.master = master
        self.feed = feed
        self.writer = Writer(write_engine, feed, max_batch=max_batch)
        self._write_engine = write_engine
        # one core, one keyring, shared by the repositories (repository.py)
        self.core = StoreCore(engine, self.reader, self.writer, master, feed, Keyring(engine, master, key_cache))
        self._keys: KeyCache = self.core.keyring.cache
        self.folder_ops = FolderOps(self.core)
        self.message_ops = MessageOps(self.core)
        self.document_ops = DocumentOps(self.core)
        self.conversation_ops = ConversationOps(self.core)
        self.queue_ops = QueueOps(self.core)
        self.page_ops = PageOps(self.core)
        self.pro_access_ops = ProAccessOps(self.core)
        self.thread_ops = ThreadOps(self.core)
        self.recent_ops = RecentOps(self.core)
        self.claim_ops = ClaimOps(self.core)
        self.budget_ops = BudgetOps(self.core)
        self.imap_read_ops = imapreads.ImapReadOps(self.core)
        # RCPT lookups and their bulk renewal: one Reader hop each (cache.py)
        self._cache: MailboxCache[MailboxInfo] = MailboxCache(self._mailbox_read, mailbox_cache_ttl,
                                                              lookup_many=self.mailboxes_by_ins)
        self._spooled_commits = asyncio.Semaphore(SPOOLED_COMMITS)

    @property
    def hears_every_change(self) -> bool:
        """Whether every change to the mailboxes reaches this process's feed before any
        command that follows its commit runs: SQLite, written by one daemon only (the
        daemon's store lock, relay/daemon/storelock.py; the writer resolves its callers'
        futures and publishes in one step, writer.py). Not on PostgreSQL, where another
        node's change arrives later by NOTIFY (nodefeed.py), nor with `imap.processes` > 1,
        where another process's arrives later by procfeed.py."""
        return self._write_engine.dialect.name == "sqlite" and self.writer.shared_lock is None

    def share_writes(self, lock_fd: int, after_commit: Callable[[list[Change]], None]) -> None:
        """Write this SQLite file beside the other processes of one daemon (imap.processes
        > 1): each transaction holds `lock_fd`'s flock, and `after_commit` tells the others
        (mailbox_store/procfeed.py). Set before the first session's write."""
        self.writer.shared_lock = lock_fd
        self.writer.after_commit = after_commit

    @property
    def executor(self) -> Executor | None:
        """Where whole messages and documents are sealed and opened (relay/core/pools.py's
        crypto pool in the daemon; None: asyncio's default executor)."""
        return self.core.executor

    @executor.setter
    def executor(self, executor: Executor | None) -> None:
        self.core.executor = executor

    @property
    def node_id(self) -> str:
        return self.core.node_id

    @property
    def _node_id(self) -> str | None:
        return self.core.node_id_value

    @_node_id.setter
    def _node_id(self, value: str | None) -> None:
        self.core.node_id_value = value

    @classmethod
    async def open(cls, url: str, master: MasterKey, feed: Feed | None = None,
                   max_batch: int = 64, busy_timeout_ms: int = 10_000,
                   read_pool_size: int = 32, mailbox_cache_ttl: float = 0.0, key_cache: int = 10_000,
                   password_file: Path | None = None, upgrade: bool | None = None,
                   listen_nodes: bool = True) -> "Store":
        """upgrade: bring the schema to head at open (None: on SQLite, the embedded
        default, yes; on PostgreSQL no, and SchemaBehind unless it is at head:
        engines.py says why). listen_nodes: on PostgreSQL, hear the other nodes'
        changes (a daemon); a CLI command only announces its own."""
        # Readers: enough pooled connections for every concurrent session; connections
        # beyond pool_size are closed after use, and a new aiosqlite connection costs a
        # thread and the PRAGMAs (measured: hundreds of threads per second under load).
        engine = create_async_engine(url, pool_size=read_pool_size, max_overflow=read_pool_size,
                                     connect_args=engines.connect_args(url, password_file))
        args = engines.connect_args(url, password_file)
        write_engine = create_engine(_sync_url(url), pool_size=1, max_overflow=0, connect_args=args)
        read_engine = create_engine(_sync_url(url), pool_size=READ_THREADS, max_overflow=0, connect_args=args)
        if engine.dialect.name == "sqlite":
            # readers are many and short-lived in use: a small page cache each (SQLite's
            # default 2 MB x 32 pooled readers was a quarter of the daemon's memory)
            _install_sqlite_pragmas(engine.sync_engine, busy_timeout_ms, cache_kib=512)
            _install_sqlite_pragmas(write_engine, busy_timeout_ms)
            _install_sqlite_pragmas(read_engine, busy_timeout_ms, cache_kib=2000, begin=False)
        store = cls(engine, write_engine, master, feed or Feed(), max_batch, mailbox_cache_ttl, read_engine,
                    key_cache)
        store.writer.start()
        try:
            if upgrade if upgrade is not None else engine.dialect.name == "sqlite":
                await store.writer.submit(_migrate)
            else:
                await store.writer.submit(lambda conn: (engines.check_schema(conn), []))
            if engine.dialect.name == "postgresql":  # several nodes share the database (nodefeed.py)
                store.writer.before_commit = notifier(store.node_id)
                if listen_nodes:
                    store.node_listener = NodeFeedListener(listen_dsn(url), store.feed, store.node_id,
                                                           args.get("password"))
                    await store.node_listener.start()
        except BaseException:
            await store.close()
            raise
        return store

    async def ping(self) -> None:
        """A query round trip (health checks)."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        await self._cache.close()
        if self.node_listener is not None:
            await self.node_listener.stop()
        await self.writer.close()
        await asyncio.to_thread(self.reader.close)
        self._write_engine.dispose()
        await self.engine.dispose()

    # ---- mailboxes -------------------------------------------------------------

    async def create_mailbox(self, ins: str, state: MailboxState = MailboxState.PENDING,
                             password_hash: str | None = None,
                             notify_email: str | None = None,
                             activation_hash: str | None = None) -> MailboxInfo:
        wrapped = self.master.wrap(new_data_key(), ins)
        now = dt.datetime.now(dt.timezone.utc)
        uidvalidity = int(time.time())

        def job(conn: Connection) -> tuple[MailboxInfo, list[Change]]:
            try:
                mid = conn.execute(insert(Mailbox).values(
                    ins=ins, state=state.value, password_hash=password_hash,
                    notify_email=notify_email, data_key_wrapped=wrapped,
                    master_key_id=self.master.key_id, created_at=now, activation_hash=activation_hash,
                    last_uidvalidity=uidvalidity).returning(Mailbox.id)).scalar_one()
            except IntegrityError:
                raise MailboxExists(f"mailbox {ins} already exists") from None
            conn.execute(insert(Folder), [
                {"mailbox_id": mid, "name": name, "special_use": su,
                 "uidvalidity": uidvalidity, "uidnext": 1} for name, su in DEFAULT_FOLDERS])
            conn.execute(insert(Subscription), [{"mailbox_id": mid, "name": name} for name, _ in DEFAULT_FOLDERS])
            # issue 16 §6: the creation and what it set, in the same transaction
            conn.execute(insert(AuditEvent), creation_audit(mid, now, state.value, password_hash is not None,
                                                            notify_email is not None, activation_hash is not None))
            return MailboxInfo(mid, ins, state, notify_email, now), []

        info = await self.writer.submit(job)
        self._cache.forget(ins)
        return info

    @staticmethod
    def _info(row: Any) -> MailboxInfo:
        return mailbox_info(row)

    async def get_mailbox(self, ins: str) -> MailboxInfo | None:
        row = await self.reader.run(lambda conn: imapreads.mailbox_row(conn, ins))
        return self._info(row) if row else None

    async def _mailbox_read(self, ins: str) -> MailboxInfo | None:
        """get_mailbox in one Reader hop (the async driver takes several)."""
        return (await self.mailboxes_by_ins([ins])).get(ins)

    async def mailboxes_by_ins(self, ins: Collection[str]) -> dict[str, MailboxInfo]:
        """The mailboxes of these INS that exist, in one Reader hop (cache.py's renewal)."""
        wanted = sorted(ins)

        def read(conn: Connection) -> dict[str, MailboxInfo]:
            out: dict[str, MailboxInfo] = {}
            for start in range(0, len(wanted), 500):  # within SQLite's bound on parameters
                for row in imapreads.MAILBOXES_BY_INS.all(conn, {"ins": wanted[start:start + 500]}):
                    out[row.ins] = self._info(row)
            return out

        return await self.reader.run(read)

    async def claim_receipt(self, mailbox_id: int, folder: str, uid: int) -> tuple[str, str | None] | None:
        """The read receipt this message's delivery recorded, if it was not sent yet;
        marked sent in the same transaction (one caller only gets it: sent once)."""
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[tuple[str, str | None] | None, list[Change]]:
            blob_id = conn.execute(select(Message.blob_id).join(Folder, Folder.id == Message.folder_id).where(
                Folder.mailbox_id == mailbox_id, Folder.name == folder, Message.uid == uid)).scalar()
            if blob_id is None:
                return None, []
            row = conn.execute(select(ReceiptRequest.address, ReceiptRequest.message_id).where(
                ReceiptRequest.mailbox_id == mailbox_id, ReceiptRequest.blob_id == blob_id,
                ReceiptRequest.sent_at.is_(None))).first()
            if row is None:
                return None, []
            conn.execute(update(ReceiptRequest).where(ReceiptRequest.mailbox_id == mailbox_id,
                                                      ReceiptRequest.blob_id == blob_id).values(sent_at=when))
            return (row.address, row.message_id), []

        return await self.writer.submit(job)

    async def receipts_pending(self, mailbox_id: int, folder: str, uids: Sequence[int]) -> set[int]:
        """The UIDs among `uids` with a read receipt not sent yet: one reader hop for a
        burst of \\Seen changes (receiptreads.py), no writer job for the common none."""
        return await self.reader.run(lambda conn: receiptreads.receipts_pending(conn, mailbox_id, folder, uids))

    async def mailbox_by_id(self, mailbox_id: int) -> MailboxInfo | None:
        row = await self.reader.run(lambda conn: imapreads.mailbox_row_by_id(conn, mailbox_id))
        return self._info(row) if row else None

    async def require_mailbox(self, ins: str) -> MailboxInfo:
        """get_mailbox, or NoSuchMailbox naming the INS."""
        mb = await self.get_mailbox(ins)
        if mb is None:
            raise NoSuchMailbox(f"no mailbox for INS {ins}")
        return mb

    async def credentials(self, ins: str) -> tuple[MailboxInfo, str | None] | None:
        """The mailbox and its password hash (argon2id), for authentication only."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Mailbox.id, Mailbox.ins, Mailbox.state, Mailbox.notify_email,
                                             Mailbox.created_at, Mailbox.password_hash)
                                      .where(Mailbox.ins == ins))).first()
        return (self._info(row), row.password_hash) if row else None

    async def record_login(self, mailbox_id: int, source: str = "", protocol: str = "imap") -> None:
        """Last login time, and the login in the audit log (same transaction)."""
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            conn.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(last_login_at=when))
            conn.execute(insert(AuditEvent).values(mailbox_id=mailbox_id, at=when, actor="patient",
                                                   action="login", detail=protocol, source=source[:64]))
            return None, []

        await self.writer.submit(job)

    async def activation(self, ins: str) -> tuple[MailboxInfo, str | None] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Mailbox.id, Mailbox.ins, Mailbox.state, Mailbox.notify_email,
                                             Mailbox.created_at, Mailbox.activation_hash)
                                      .where(Mailbox.ins == ins))).first()
        return (self._info(row), row.activation_hash) if row else None

    async def activate(self, ins: str, expected_hash: str) -> MailboxInfo:
        """pending -> active, consuming the activation code whose hash was checked
        (the update only happens if that very hash is still there: single use)."""
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[MailboxInfo, list[Change]]:
            n = conn.execute(update(Mailbox).where(Mailbox.ins == ins, Mailbox.state == MailboxState.PENDING.value,
                                                   Mailbox.activation_hash == expected_hash)
                             .values(state=MailboxState.ACTIVE.value, activation_hash=None)).rowcount
            if n != 1:
                raise StoreError(f"mailbox {ins} is not waiting for this activation code")
            row = conn.execute(select(Mailbox.id, Mailbox.ins, Mailbox.state, Mailbox.notify_email,
                                      Mailbox.created_at).where(Mailbox.ins == ins)).one()
            conn.execute(insert(AuditEvent).values(mailbox_id=row.id, at=when, actor="patient",
                                                   action="activate", detail="activation code used", source="cli"))
            return self._info(row), []

        info = await self.writer.submit(job)
        self._cache.forget(ins)
        return info

    async def purge_messages(self, ins: str, items: Sequence[tuple[str, int]]) -> int:
        """Delete these (folder, uid) messages of a mailbox: those its archive holds, on
        close; a message that arrived after the archive was written stays."""
        mb = await self.require_mailbox(ins)
        when = dt.datetime.now(dt.timezone.utc)
        by_folder: dict[str, list[int]] = {}
        for folder, uid in items:
            by_folder.setdefault(folder, []).append(uid)

        def job(conn: Connection) -> tuple[int, list[Change]]:
            n = 0
            blobs: set[str] = set()
            for folder, uids in by_folder.items():
                fid = conn.execute(select(Folder.id).where(Folder.mailbox_id == mb.id,
                                                           Folder.name == folder)).scalar()
                if fid is None:
                    continue
                value = bump(conn, [fid])[fid]
                for start in range(0, len(uids), 500):
                    chunk = uids[start:start + 500]
                    blobs |= set(conn.execute(select(Message.blob_id).where(
                        Message.folder_id == fid, Message.uid.in_(chunk))).scalars())
                    present = list(conn.execute(select(Message.uid).where(
                        Message.folder_id == fid, Message.uid.in_(chunk))).scalars())
                    n += conn.execute(delete(Message).where(Message.folder_id == fid,
                                                            Message.uid.in_(chunk))).rowcount
                    record_expunged(conn, fid, present, value)
            delete_orphan_blobs(conn, blobs)
            conn.execute(insert(AuditEvent).values(mailbox_id=mb.id, at=when, actor="admin", action="messages.purged",
                                                   detail=f"{n} message(s)", source="cli"))
            return n, []

        return await self.writer.submit(job)

    async def remove_all_guardians(self, ins: str) -> list[str]:
        """Majority (DESIGN.md §4 "Minors"): every guardian loses access; audited."""
        child = await self.require_mailbox(ins)
        removed = [g.ins for g in await self.guardians_of(child.id)]
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            conn.execute(delete(Guardian).where(Guardian.child_id == child.id))
            conn.execute(insert(AuditEvent).values(mailbox_id=child.id, at=when, actor="admin", action="majority",
                                                   detail=f"guardians removed: {', '.join(removed) or 'none'}",
                                                   source="cli"))
            return None, []

        await self.writer.submit(job)
        return removed

    async def stale(self, since: dt.datetime) -> list[tuple[MailboxInfo, dt.datetime | None]]:
        """Mailboxes with no login since `since` (never logged in: created before it)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(Mailbox.id, Mailbox.ins, Mailbox.state, Mailbox.notify_email, Mailbox.created_at,
                       Mailbox.last_login_at)
                .where(((Mailbox.last_login_at.is_(None)) & (Mailbox.created_at < since))
                       | (Mailbox.last_login_at < since)).order_by(Mailbox.ins))).all()
        out = []
        for r in rows:
            last = r.last_login_at
            out.append((self._info(r), utc(last) if last else None))
        return out

    async def audit(self, mailbox_id: int, actor: str, action: str, detail: str = "", source: str = "") -> None:
        """Append one event to the mailbox's audit log (committed before returning)."""
        await self.core.audit(mailbox_id, actor, action, detail, source)

    async def audit_events(self, mailbox_id: int) -> list[AuditRecord]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(AuditEvent.at, AuditEvent.actor, AuditEvent.action,
                                              AuditEvent.detail, AuditEvent.source)
                                       .where(AuditEvent.mailbox_id == mailbox_id).order_by(AuditEvent.id))).all()
        return [AuditRecord(utc(r.at),
                            r.actor, r.action, r.detail, r.source) for r in rows]

    # ---- guardians (DESIGN.md §4 "Minors and helpers") -----------------------------------

    async def add_guardian(self, child_ins: str, guardian_ins: str) -> None:
        if child_ins == guardian_ins:
            raise StoreError("a mailbox cannot be its own guardian")
        child, guardian = await self.require_mailbox(child_ins), await self.require_mailbox(guardian_ins)
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            try:
                conn.execute(insert(Guardian).values(child_id=child.id, guardian_id=guardian.id, created_at=when))
            except IntegrityError:
                raise StoreError(f"{guardian_ins} is already a guardian of {child_ins}") from None
            conn.execute(insert(AuditEvent).values(mailbox_id=child.id, at=when, actor="admin", action="guardian.add",
                                                   detail=f"guardian {guardian_ins}", source="cli"))
            return None, []

        await self.writer.submit(job)

    async def remove_guardian(self, child_ins: str, guardian_ins: str) -> None:
        child, guardian = await self.require_mailbox(child_ins), await self.require_mailbox(guardian_ins)
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            n = conn.execute(delete(Guardian).where(Guardian.child_id == child.id,
                                                    Guardian.guardian_id == guardian.id)).rowcount
            if n != 1:
                raise StoreError(f"{guardian_ins} is not a guardian of {child_ins}")
            conn.execute(insert(AuditEvent).values(mailbox_id=child.id, at=when, actor="admin",
                                                   action="guardian.remove", detail=f"guardian {guardian_ins}",
                                                   source="cli"))
            return None, []

        await self.writer.submit(job)

    async def wards(self, guardian_id: int) -> list[MailboxInfo]:
        """The mailboxes this one may read as a guardian (always asked fresh: a removed
        guardian loses access at once); IMAP asks at every command in a child's folder."""
        return [self._info(r) for r in await self.reader.run(lambda conn: imapreads.ward_rows(conn, guardian_id))]

    async def guardians_of(self, child_id: int) -> list[MailboxInfo]:
        return await self._guardianship(Guardian.guardian_id, Guardian.child_id == child_id)

    async def _guardianship(self, side: Any, condition: Any) -> list[MailboxInfo]:
        """The mailboxes on one side of the guardians relation, given the other."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(Mailbox.id, Mailbox.ins, Mailbox.state, Mailbox.notify_email, Mailbox.created_at)
                .join(Guardian, side == Mailbox.id).where(condition).order_by(Mailbox.ins))).all()
        return [self._info(r) for r in rows]

    async def cached_mailbox(self, ins: str) -> MailboxInfo | None:
        """get_mailbox through the short-lived cache (cache.py): for hot paths such as
        RCPT; changes made through this store are seen at once."""
        return await self._cache.get(ins)

    async def list_mailboxes(self) -> list[MailboxInfo]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(Mailbox.id, Mailbox.ins, Mailbox.state, Mailbox.notify_email,
                                              Mailbox.created_at).order_by(Mailbox.ins))).all()
        return [self._info(r) for r in rows]

    async def set_state(self, ins: str, state: MailboxState, actor: str = "admin") -> MailboxInfo:
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[MailboxInfo, list[Change]]:
            n = conn.execute(update(Mailbox).where(Mailbox.ins == ins).values(state=state.value)).rowcount
            if n != 1:
                raise NoSuchMailbox(f"no mailbox for INS {ins}")
            row = conn.execute(select(Mailbox.id, Mailbox.ins, Mailbox.state, Mailbox.notify_email,
                                      Mailbox.created_at).where(Mailbox.ins == ins)).one()
            conn.execute(insert(AuditEvent).values(mailbox_id=row.id, at=when, actor=actor, action="state",
                                                   detail=state.value, source="cli"))
            return self._info(row), []

        info = await self.writer.submit(job)
        self._cache.forget(ins)
        return info

    async def set_notify_email(self, ins: str, address: str | None, actor: str = "admin",
                               source: str = "cli") -> None:
        """The patient's personal address for notifications (None: no notifications)."""
        await self._update_mailbox(ins, {"notify_email": address}, "notify_email", "set" if address else "removed",
                                   actor, source)

    async def set_password(self, ins: str, password_hash: str, actor: str = "admin", source: str = "cli") -> None:
        """A new argon2id password hash (`mailbox passwd`), audited."""
        await self._update_mailbox(ins, {"password_hash": password_hash}, "password", "changed", actor, source)

    async def _update_mailbox(self, ins: str, values: dict[str, Any], action: str, detail: str, actor: str,
                              source: str) -> None:
        """Change columns of one mailbox, with its audit event, in one transaction."""
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            mid = conn.execute(select(Mailbox.id).where(Mailbox.ins == ins)).scalar()
            if mid is None:
                raise NoSuchMailbox(f"no mailbox for INS {ins}")
            conn.execute(update(Mailbox).where(Mailbox.id == mid).values(**values))
            conn.execute(insert(AuditEvent).values(mailbox_id=mid, at=when, actor=actor, action=action,
                                                   detail=detail, source=source))
            return None, []

        await self.writer.submit(job)
        self._cache.forget(ins)

    async def folders(self, ins: str) -> list[FolderInfo]:
        return await self.list_folders((await self.require_mailbox(ins)).id)

    # ---- keys ---------------------------------------------------------------------

    async def _mailbox_keys(self, mailbox_id: int, ins: str) -> MailboxKeys:
        return await self.core.keyring.keys(mailbox_id, ins)

    async def _data_key(self, mailbox_id: int, ins: str) -> AESGCM:
        return (await self._mailbox_keys(mailbox_id, ins)).aead

    async def _dedupe_key(self, mailbox_id: int, ins: str) -> bytes:
        return (await self._mailbox_keys(mailbox_id, ins)).dedupe

    async def _thread_hmac_key(self, mailbox_id: int, ins: str) -> bytes:
        return (await self._mailbox_keys(mailbox_id, ins)).thread

    async def off_loop(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        return await self.core.off_loop(size, fn, *args)

    async def rewrap_data_keys(self, new: MasterKey) -> int:
        """Key rotation: every data key not yet under `new` is unwrapped (with whichever
        master key wrapped it) and wrapped again with `new`, in batches, while the daemon
        runs. The data keys themselves, hence every sealed message, do not change."""
        done = 0
        while True:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(
                    select(Mailbox.id, Mailbox.ins, Mailbox.data_key_wrapped, Mailbox.master_key_id)
                    .where(Mailbox.master_key_id != new.key_id).limit(500))).all()
            if not rows:
                return done
            updates = [{"mid": r.id, "old": r.master_key_id, "w": new.wrap(
                self.master.unwrap(r.data_key_wrapped, r.ins, r.master_key_id), r.ins)} for r in rows]

            def job(conn: Connection, updates: list[dict[str, Any]] = updates) -> tuple[int, list[Change]]:
                # only rows still under the key we read them with (no lost concurrent change)
                n = conn.execute(update(Mailbox).where(Mailbox.id == bindparam("mid"),
                                                       Mailbox.master_key_id == bindparam("old"))
                                 .values(data_key_wrapped=bindparam("w"), master_key_id=new.key_id),
                                 updates).rowcount
                return n, []

            done += await self.writer.submit(job)

    # ---- messages -------------------------------------------------------------------

    async def deliver(self, mailboxes: Sequence[MailboxInfo], raw: bytes,
                      internal_date: dt.datetime | None = None, folder: str = "INBOX",
                      flags: Sequence[str] = (),
                      documents: Sequence[tuple[MailboxInfo, Sequence[NewDocument]]] = (),
                      filed_by: str = "mx", source: str = "",
                      not_filed: Sequence[tuple[MailboxInfo, str]] = (),
                      conversation: ConversationEffects | None = None,
                      receipt: tuple[str, str | None] | None = None, prefix: bytes = b"",
                      outgoing: Sequence[PreparedOutgoing] = (),
                      thread_root: str | None | object = ROOT_FROM_BYTES) -> list[Delivered]:
        """Store one message in each mailbox's folder, and file its documents in their
        dossiers (`not_filed`: (mailbox, reason) for the audit log), and record the
        conversation effects of a professional's message and its read-receipt request
        (address, Message-ID), and queue `outgoing` (prepare_outgoing), all or nothing,
        durably. The message stored is `prefix` (the MX's trace headers) followed by
        `raw`: they are sealed without being joined. `thread_root`: the message's
        thread root (policy.conversation.thread_root) when the caller parsed its headers
        already, so they are not parsed again here on the event loop."""
        # stored in UTC: SQLite keeps no zone, and a time read back is taken as UTC
        # (an APPEND dated 01:30 +0200 was read back as 01:30 +0000)
        when = (internal_date or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
        blob_id = uuid.uuid4().hex
        size = len(prefix) + len(raw)
        content_key, sealed = await self.off_loop(size, seal_blob_parts, blob_id, (prefix, raw))
        keys = [(mb, wrap_content_key(await self._data_key(mb.id, mb.ins), mb.ins, blob_id, content_key))
                for mb in mailboxes]
        docs = await self.seal_documents(documents, filed_by, source, not_filed, (blob_id, content_key))
        end = raw.find(b"\r\n\r\n", 0, HEAD_MAX)
        if thread_root is ROOT_FROM_BYTES or end < 0 or len(prefix) + end + 4 > HEAD_MAX:
            # what the webmail reads back from the stored bytes (thread_root_of) is the
            # same as the caller's root only when the whole header section is within HEAD_MAX
            root = thread_root_of(prefix + raw[:HEAD_MAX] if prefix else raw)
        else:
            root = thread_root  # type: ignore[assignment]
        threads = {mb.id: thread_key(await self._thread_hmac_key(mb.id, mb.ins), root) for mb in mailboxes}
        return await self.writer.submit(
            _Delivery(blob_id, sealed, size, keys, folder, " ".join(flags), when, docs, conversation, receipt,
                      threads, tuple(outgoing)))

    async def deliver_spooled(self, mailboxes: Sequence[MailboxInfo], spooled: SpooledMessage,
                              internal_date: dt.datetime | None = None, folder: str = "INBOX",
                              flags: Sequence[str] = ()) -> list[Delivered]:
        """deliver() for a message sealed while it was received (spool.py), an IMAP
        APPEND's: its plaintext is never whole in memory. The sealed bytes are read
        back once, in a worker thread, and at most SPOOLED_COMMITS messages at a time
        hold theirs in memory: 50 APPENDs ending together must not all load 25 MB."""
        # stored in UTC: SQLite keeps no zone, and a time read back is taken as UTC
        # (an APPEND dated 01:30 +0200 was read back as 01:30 +0000)
        when = (internal_date or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
        keys = [(mb, wrap_content_key(await self._data_key(mb.id, mb.ins), mb.ins, spooled.blob_id,
                                      spooled.content_key)) for mb in mailboxes]
        root = thread_root_of(spooled.head)
        threads = {mb.id: thread_key(await self._thread_hmac_key(mb.id, mb.ins), root) for mb in mailboxes}
        async with self._spooled_commits:
            sealed = await asyncio.to_thread(spooled.sealed)
            return await self.writer.submit(
                _Delivery(spooled.blob_id, sealed, spooled.size, keys, folder, " ".join(flags), when,
                          SealedDocuments(), None, None, threads))

    async def deliver_all(self, mailbox: MailboxInfo, items: Sequence[tuple[bytes | SpooledMessage,
                                                                           dt.datetime | None, Sequence[str]]],
                          folder: str, after: Callable[[Connection], None] | None = None) -> list[Delivered]:
        """Several messages (content, internal date, flags) into one folder, all or
        none, in one transaction, UIDs in order: MULTIAPPEND (RFC 3502 §6.3.11: "if
        the server rejects any message, none of them is appended"). A spooled message
        is read back as deliver_spooled() does. `after` runs in the same transaction,
        once they are in (an APPEND's \\Recent claim, recent.claim_all)."""
        deliveries: list[_Delivery] = []
        async with self._spooled_commits:
            for content, internal_date, flags in items:
                when = (internal_date or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
                if isinstance(content, SpooledMessage):
                    blob_id, content_key, size = content.blob_id, content.content_key, content.size
                    sealed = await asyncio.to_thread(content.sealed)
                else:
                    blob_id, size = uuid.uuid4().hex, len(content)
                    content_key, sealed = await self.off_loop(size, seal_blob, blob_id, content)
                key = wrap_content_key(await self._data_key(mailbox.id, mailbox.ins), mailbox.ins, blob_id,
                                       content_key)
                root = thread_root_of(content.head if isinstance(content, SpooledMessage) else content)
                threads = {mailbox.id: thread_key(await self._thread_hmac_key(mailbox.id, mailbox.ins), root)}
                deliveries.append(_Delivery(blob_id, sealed, size, [(mailbox, key)], folder, " ".join(flags), when,
                                            SealedDocuments(), None, None, threads))

            def job(conn: Connection) -> tuple[list[Delivered], list[Change]]:
                out: list[Delivered] = []
                changes: list[Change] = []
                for delivered, published in _Delivery.apply_group(conn, deliveries):
                    out += delivered
                    changes += published
                if after is not None:
                    after(conn)
                return out, changes

            return await self.writer.submit(job)

    async def messages(self, ins: str, folder: str = "INBOX") -> list[MessageInfo]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(Message.uid, Message.size, Message.flags, Message.internal_date)
                .join(Folder, Folder.id == Message.folder_id).join(Mailbox, Mailbox.id == Folder.mailbox_id)
                .where(Mailbox.ins == ins, Folder.name == folder).order_by(Message.uid))).all()
        return [MessageInfo(r.uid, r.size, tuple(r.flags.split()), r.internal_date) for r in rows]

    async def fetch_raw(self, ins: str, folder: str, uid: int) -> bytes:
        got = await self.fetch_raw_many(ins, folder, [uid])
        if uid not in got:
            raise StoreError(f"no message {folder}/{uid}")
        return got[uid]

    async def fetch_raw_many(self, ins: str, folder: str, uids: Sequence[int]) -> dict[int, bytes]:
        """The decrypted messages of those UIDs that exist, in one query per chunk
        (a query per message cost a round trip each: FETCH 1:* on 10,000 messages took
        19 s that way)."""
        out: dict[int, bytes] = {}
        mb = await self.cached_mailbox(ins)
        aead = await self._data_key(mb.id, ins) if mb is not None else None
        for start in range(0, len(uids), 500):
            chunk = list(uids[start:start + 500])

            def read(conn: Connection, chunk: list[int] = chunk) -> tuple[list[Any], dict[int, bytes] | None]:
                rows = imapreads.raw_rows(conn, ins, folder, chunk)
                if mb is None or aead is None or any(r.id != mb.id for r in rows):
                    return rows, None  # the mailbox changed under the cache: opened below
                # small ones opened in the reader's thread with the rows (issue 12 §3): never
                # on the event loop, no second hop; large ones in the crypto pool as before,
                # so that a FETCH of big bodies does not hold one of the few reader threads
                small = {r.uid: open_blob(aead, ins, r.blob_id, r.key_wrapped, r.sealed)
                         for r in rows if len(r.sealed) <= INLINE_CRYPTO_MAX}
                return [r for r in rows if r.uid not in small], small

            rows, opened = await self.reader.run(read)
            if opened is not None:
                out.update(opened)
            for row in rows:
                out[row.uid] = await self.off_loop(len(row.sealed), open_blob, await self._data_key(row.id, ins),
                                                   ins, row.blob_id, row.key_wrapped, row.sealed)
        return out
