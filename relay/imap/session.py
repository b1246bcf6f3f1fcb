"""One IMAP session: reading commands, the state machine, the command handlers.

Implementation notes (invariants a newcomer must not break):
- Commands are dispatched by a table per protocol state (RFC 9051 §3): a command that
  is not in the current state's table gets BAD, never a half-run.
- The session talks to the store only through its API (mailbox_store), never SQL.
- The selected mailbox's view changes only through Selected.updates(), i.e. only when
  the client is told (EXISTS/EXPUNGE); see selected.py.
- Never write to the client while waiting on the store with a lock held: there is no
  lock; the writer is the store's single writer.
- STARTTLS discards whatever plaintext the client pipelined after it (RFC 3207-like
  rule of RFC 9051 §6.2.1), so injected commands never run inside TLS.
- A malformed command gets BAD and the session goes on; a line or literal over the
  limits ends the session with BYE (the stream cannot be resynchronised safely).
"""
from __future__ import annotations

import asyncio
import base64
import bisect
import binascii
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from dossier_bridge.filing import file_messages
from mailbox_store.feed import Change
from mailbox_store.folders import SEPARATOR, FolderError, FolderInfo
from mailbox_store.messages import SEEN
from mailbox_store.models import DOSSIER_FOLDER
from mailbox_store.spool import SpooledMessage
from mailbox_store.store import MailboxInfo, StoreError
from relay.imap import condstore, contextsearch
from relay.imap.statusline import status_line
from relay.imap import notify as notifymod
from relay.imap import fetch as fetchmod
from relay.imap import fetchcache, listing, recent, utf7, wire
from relay.imap.budget import Reservation
from relay.imap.idlefan import FolderKey
from relay.imap.parser import TAG_CHARS, BadCharset, BadMailboxName, ParseError, Parser, literal_announcement
from relay.imap.selected import Selected
from relay.imap.sequence import compress, expand, intervals
from policy.recipients import MailboxState
from relay.imap.types import FetchAtt, MessageView, SequenceSet

from relay.core import storefaults
from relay.imap import append as appendmod
from relay.imap import ordering
from relay.imap.matching import FETCH_CHUNK, matching_views
from relay.imap.matching import chunks as _chunks
from relay.imap.metrics import command_seconds
from relay.imap.names import OTHER_USERS, resolve, resolve_own
from relay.imap.replies import Reply, bad, no, ok

if TYPE_CHECKING:
    from relay.imap.server import ImapServer

log = structlog.get_logger("relay.imap")

SYSTEM_FLAGS = (b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft")
NOT_AUTH, AUTH, SELECTED, LOGOUT = "not-authenticated", "authenticated", "selected", "logout"


class Bye(Exception):
    """End the session after sending this BYE text."""


def _tag_of(first_line: bytes) -> bytes:
    """The tag of a command's first line, to answer it before it is parsed; "*" when
    it is not a valid tag (never echo raw bytes into a reply)."""
    tag = first_line.split(b" ", 1)[0]
    return tag if tag and all(c in TAG_CHARS for c in tag) else b"*"


def _is_append(first_line: bytes) -> bool:
    """Whether the line starts an APPEND (RFC 9051 §6.3.12: tag SP "APPEND" SP ...)."""
    words = first_line.split(b" ", 2)
    return len(words) == 3 and words[1].upper() == b"APPEND"


# A handler returns the tagged reply, or None when it already sent it (STARTTLS).
Handler = Callable[["Session", str, Parser, bool], Awaitable[Reply | None]]


class Session:
    def __init__(self, server: "ImapServer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 tls: bool):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.tls = tls
        self.state = NOT_AUTH
        self.user: MailboxInfo | None = None
        self._selected: Selected | None = None
        self._watching: FolderKey | None = None  # the folder whose changes reach on_change (idlefan.py)
        self.notify: notifymod.Notify | None = None  # RFC 5465 NOTIFY SET (notify.py)
        self._idle_poke: Callable[[], None] | None = None  # wakes IDLE's wait (cmd_idle)
        self.rev2 = False
        self.condstore = self.qresync = False  # RFC 7162, per session (condstore.py)
        self.peer = (writer.get_extra_info("peername") or ("?",))[0]
        self.selected_gone = False  # another session deleted or renamed the selected folder
        self.busy = False  # inside a command: SIGTERM lets it finish
        # token bucket: a client may burst, but a flood of commands is slowed down
        self._tokens = float(server.config.imap_command_burst)
        self._refilled = time.monotonic()
        # the command being read or run: its APPEND messages sealed into the spool (and
        # where the parser meets each), and its literal bytes reserved (budget.py)
        self.spools: list[SpooledMessage] = []
        self.spool_at: list[int] = []
        self._reservations: list[Reservation] = []
        self._held: bytearray | None = None  # a command's untagged lines, sent with its tagged reply
        # changes published while SELECT builds its view (after its snapshot was asked
        # for, before the view is in place): replayed into the view, else lost
        self._backlog: list[Change] | None = None
        self._backlog_overflow = False

    # ---- I/O ------------------------------------------------------------------------

    async def send(self, *lines: bytes, flush: bool = False) -> None:
        # one write: over TLS each write became its own record (10,000 FETCH lines after
        # a big STORE held the event loop for a quarter of a second). Inside a command
        # (execute), lines wait for its tagged reply and leave with it in one write: one
        # TLS record and one drain per command instead of one per send (issue 12 §3).
        data = b"\r\n".join(lines) + b"\r\n" if lines else b""
        held = self._held
        if held is not None:
            # a continuation request ("+") or a flush waits for the client: what is held
            # goes first, and nothing more of this command is held
            waits = flush or data[:1] == b"+"
            if not waits:
                held += data
                if len(held) < HOLD_MAX:
                    return
                data = b""
            data = bytes(held) + data
            if waits:
                self._held = None
            else:
                held.clear()
        if data:
            self.writer.write(data)
        await self.writer.drain()

    def _quickack(self) -> None:
        """Acknowledge the client's next segments at once (Linux TCP_QUICKACK), while
        the rest of a command is on its way: its literal, then the end of its line.

        Why: a client with Nagle's algorithm on (imaplib, for one; asyncio clients set
        TCP_NODELAY) holds its last small segment (the literal's tail, the closing
        CRLF) until what it sent before is acknowledged, and Linux delays that ACK up
        to 40 ms when the server has nothing to send, which a server waiting for the
        rest of a command never has. One APPEND from imaplib took 44 ms here against
        1.5 ms on Dovecot; with this, 1.8 ms. The flag is not permanent (tcp(7)), so
        it is set again after each piece of a literal; where it does not exist, this
        does nothing."""
        if _TCP_QUICKACK is None:
            return
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            except OSError:  # not TCP, or already closed: nothing to hurry
                pass

    def _unhold(self) -> None:
        """The command ended without its tagged reply (Bye, a lost connection): what
        it held is written (no drain), before any BYE."""
        held, self._held = self._held, None
        if held:
            try:
                self.writer.write(bytes(held))
            except (ConnectionError, RuntimeError):
                pass

    async def read_line(self, timeout: float) -> bytes:
        """One CRLF-terminated line; the session ends (BYE) when it is too long or the
        client stays silent past timeout (RFC 3501 §5.4)."""
        reader = self.reader
        try:
            if reader._buffer.find(b"\r\n") >= 0:  # type: ignore[attr-defined]  # (no public peek)
                # a line already received (a pipelining client's next command): readuntil
                # returns it without waiting, so no timer (issue 12 §3: arming and
                # cancelling one per line was 5% of the loop's samples under imaptest)
                return await reader.readuntil(b"\r\n")
            # asyncio.timeout, not wait_for: no task per line (issue 12 §3, py-spy)
            async with asyncio.timeout(timeout):
                return await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise Bye("command line too long") from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError from None
        except asyncio.TimeoutError:
            raise Bye("autologout: idle for too long") from None

    async def read_command(self) -> bytes:
        """One whole command: a line, and every literal it announces (RFC 9051 §4.3,
        RFC 7888 LITERAL+), bounded by imap.max_line and imap.max_literal, and before
        login by PRELOGIN_LITERAL and PRELOGIN_TIMEOUT (an unauthenticated client
        gets no room to hold memory or sessions).

        Issue 10: a command's literals must all arrive within imap.literal_timeout
        (a client trickling one byte per idle timeout held its slot for ever); an
        APPEND's literals are bytes in flight, reserved against the per-account and
        global bounds (budget.py) before "+"; its message, when larger than
        SPOOL_MIN, is sealed into the spool as it arrives (self.spools: each message
        of a MULTIAPPEND its own, up to MAX_SPOOLS), never held whole in memory. A
        command refused on the way (bounds, NUL in a literal) is read to its end, with
        bounded memory, answered, and never run: ValueError."""
        cfg = self.server.config
        authenticated = self.user is not None
        timeout = cfg.imap_idle_timeout if authenticated else PRELOGIN_TIMEOUT
        max_literal = cfg.imap_max_literal if authenticated else PRELOGIN_LITERAL
        # octets held in memory (lines and unspooled literals): a line's worth of
        # literals at most; only an APPEND message may be larger, and it is spooled
        max_kept = cfg.imap_max_line + (cfg.imap_max_line if authenticated else PRELOGIN_LITERAL)
        spool_min = min(SPOOL_MIN, cfg.imap_max_line)
        max_total = cfg.imap_max_line + max_literal  # octets of a whole command: lines and literals
        self._end_command()
        parts: list[bytes] = []
        kept = total = 0
        deadline: float | None = None  # set by the first literal
        refusal: Reply | None = None
        append = False
        while True:
            line = await self._read_line_until(timeout, deadline, parts)
            total += len(line)
            kept += len(line)
            if total > max_total or kept > max_kept:
                raise Bye("command too long")
            if not parts:
                append = authenticated and _is_append(line)
            announced = literal_announcement(line[:-2])
            if announced is None:
                parts.append(line[:-2])
                if refusal is not None:
                    await self._answer_refused(parts[0], refusal)
                    raise ValueError("command refused while it was received")
                return b"".join(parts)
            size, nonsync = announced
            spooled = append and size > spool_min and refusal is None and len(self.spools) < MAX_SPOOLS
            # APPEND's messages (spooled) are the only literals that may be large: any
            # other is a string of the line's order, kept in memory; a whole command,
            # however many messages, stays within imap.max_line + imap.max_literal
            if size > (max_literal if spooled else min(max_literal, max_kept - kept)) or \
                    total + size > max_total:
                if nonsync:  # RFC 7888 §4: the bytes are coming anyway; cannot resync
                    raise Bye("literal too large")
                # RFC 7888 §4 / RFC 9051 §7.1: the client waits for "+" or a tagged reply
                await self.send(_tag_of(parts[0] if parts else line) + b" BAD [TOOBIG] literal too large")
                raise ValueError("literal too large")
            if append and refusal is None:
                assert self.user is not None
                held = self.server.literals.reserve(self.user.id, size)
                if held is None:
                    refusal = no("trop de messages en cours d'envoi, reessayez plus tard / "
                                 "too many APPEND bytes in flight, try again later", "LIMIT")
                    spooled = False
                    log.warning("imap.append_refused", reason="bytes_in_flight", size=size)
                    if not nonsync:
                        # RFC 9051 §7.5: instead of "+", a tagged reply; the client
                        # abandons the command and sends no literal
                        await self._answer_refused(parts[0] if parts else line, refusal)
                        raise ValueError("literal refused before continuation")
                else:
                    self._reservations.append(held)
            parts.append(line)
            if not nonsync:
                await self.send(b"+ go ahead")
            self._quickack()  # the literal and the rest of the line are coming
            if deadline is None:
                deadline = time.monotonic() + cfg.imap_literal_timeout
            if refusal is not None:
                # LITERAL+ (RFC 7888): the octets come anyway; read and dropped in
                # pieces, as RFC 7888 §4 has a server do with a literal it refuses
                await self._receive(size, deadline, parts, None)
            elif spooled:
                binary = line[:-2].rstrip(b"0123456789+}").endswith(b"~{")  # RFC 3516 literal8
                spool = SpooledMessage(self.server.spool_dir)
                self.spools.append(spool)
                self.spool_at.append(kept)
                await self._receive(size, deadline, parts, spool)
                spool.finish()
                if spool.has_nul and not binary:
                    refusal = bad("octet NUL dans un litteral / NUL octet in literal")
            else:
                parts.append(await self._receive(size, deadline, parts, None, keep=True))
                kept += size
            total += size

    async def _read_line_until(self, timeout: float, deadline: float | None, parts: list[bytes]) -> bytes:
        """read_line, within the command's literal deadline once one has begun."""
        if deadline is None:
            return await self.read_line(timeout)
        try:
            return await asyncio.wait_for(self.read_line(timeout), max(deadline - time.monotonic(), 0))
        except asyncio.TimeoutError:
            await self._literal_too_slow(parts)
            raise  # not reached: _literal_too_slow raises Bye

    async def _receive(self, size: int, deadline: float, parts: list[bytes], spool: SpooledMessage | None,
                       keep: bool = False) -> bytes:
        """size octets of a literal, read in pieces of at most LITERAL_PIECE: kept
        (keep), sealed into the spool, or dropped; each piece within the idle timeout,
        all of them before the deadline (imap.literal_timeout)."""
        idle = self.server.config.imap_idle_timeout
        kept: list[bytes] = []
        left = size
        while left > 0:
            wait = min(idle, deadline - time.monotonic())
            try:
                if wait <= 0:
                    raise asyncio.TimeoutError
                async with asyncio.timeout(wait):  # no task per piece (issue 12 §3)
                    piece = await self.reader.read(min(left, LITERAL_PIECE))
            except asyncio.TimeoutError:
                if time.monotonic() >= deadline:
                    await self._literal_too_slow(parts)
                raise Bye("autologout: stalled inside a literal") from None
            if not piece:
                raise ConnectionResetError
            self._quickack()
            left -= len(piece)
            if keep:
                kept.append(piece)
            elif spool is not None:
                spool.write(piece)
        return b"".join(kept)

    async def _literal_too_slow(self, parts: list[bytes]) -> None:
        """imap.literal_timeout passed inside a command's literals: the rest of the
        bytes may still come and cannot be told from a next command, so the command
        gets its tagged NO and the session ends; its reservation and spool go."""
        log.warning("imap.literal_timeout")
        self._end_command()
        if parts:
            await self._answer_refused(parts[0], no("litteral trop lent / literal not received in time", "LIMIT"))
        raise Bye("autologout: literal not received in time")

    async def _answer_refused(self, first_line: bytes, reply: "Reply") -> None:
        self._end_command()
        code = f"[{reply.code}] " if reply.code else ""
        await self.send(_tag_of(first_line) + f" {reply.status} {code}{reply.text}".encode("ascii", "replace"))

    def _end_command(self) -> None:
        """The command is answered (or abandoned): its literal bytes leave the budget
        and its spool files go."""
        for held in self._reservations:
            held.release()
        self._reservations.clear()
        for spool in self.spools:
            spool.close()
        self.spools, self.spool_at = [], []

    async def _pace(self) -> None:
        cfg = self.server.config
        now = time.monotonic()
        self._tokens = min(float(cfg.imap_command_burst),
                           self._tokens + (now - self._refilled) * cfg.imap_command_rate)
        self._refilled = now
        if self._tokens < 1:
            await asyncio.sleep((1 - self._tokens) / cfg.imap_command_rate)
            self._tokens = 1.0
            self._refilled = time.monotonic()
        self._tokens -= 1

    def capabilities(self) -> bytes:
        caps = [b"IMAP4rev1", b"IMAP4rev2", b"LITERAL+", b"SASL-IR", b"ENABLE", b"ID", b"IDLE",
                b"NAMESPACE", b"UIDPLUS", b"MOVE", b"UNSELECT", b"SPECIAL-USE", b"LIST-EXTENDED",
                b"LIST-STATUS", b"ESEARCH", b"CHILDREN", b"BINARY", b"STATUS=SIZE", b"CONDSTORE", b"QRESYNC",
                b"SORT", b"SORT=DISPLAY", b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES", b"ESORT",
                b"MULTIAPPEND", b"CATENATE", b"CONTEXT=SEARCH", b"NOTIFY"]
        if self.state == NOT_AUTH:
            caps += [b"STARTTLS", b"LOGINDISABLED"] if not self.tls else [b"AUTH=PLAIN"]
        return b" ".join(caps)

    # ---- main loop ------------------------------------------------------------------

    async def run(self) -> None:
        await self.send(b"* OK [CAPABILITY " + self.capabilities() + b"] mssante-relay IMAP ready")
        try:
            while self.state != LOGOUT:
                try:
                    data = await self.read_command()
                except ValueError:
                    continue
                await self._pace()
                self.busy = True
                try:
                    await self.execute(data)
                finally:
                    self.busy = False
                    self._end_command()
                if self.server.stopping:
                    raise Bye("server shutting down")
        except Bye as e:
            await self._bye(str(e))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            await self.close()

    async def _bye(self, text: str) -> None:
        try:
            await self.send(b"* BYE " + text.encode("ascii", "replace"))
        except (ConnectionError, ssl.SSLError):
            pass

    async def close(self) -> None:
        self._end_command()
        self.watch(None)
        notifymod.stop(self)
        self.server.forget(self)
        try:
            self.writer.close()
        except (ConnectionError, RuntimeError):
            pass

    async def execute(self, data: bytes) -> None:
        # RFC 9051 §5.1.3: UTF-8 names once rev2 is enabled
        p = Parser(data, utf8=self.rev2, spooled_at=self.spool_at)
        tag = "*"
        try:
            tag = p.tag()
            p.sp()
            name = p.command()
            uid = False
            if name == "UID":
                p.sp()
                name = p.command()
                uid = True
                if name not in UID_COMMANDS:
                    raise ParseError(f"UID {name} is not a command")
        except ParseError as e:
            await self.send(f"{tag if e.tag is None else e.tag} BAD {e}".encode("utf-8", "replace"))
            return
        if self.user is not None:
            await self.check_access()
        handler = TABLES[self.state].get(name) or ANY_STATE.get(name)
        if handler is None:
            known = any(name in t for t in TABLES.values())
            await self.send(f"{tag} BAD {name} {'not allowed now' if known else 'unknown command'}".encode())
            return
        started = time.monotonic()
        self._held = bytearray()
        try:
            await self._run_handler(name, handler, tag, p, uid, started)
        finally:
            self._unhold()

    async def _run_handler(self, name: str, handler: Handler, tag: str, p: Parser, uid: bool,
                           started: float) -> None:
        try:
            reply = await self.bounded(name, handler, tag, p, uid)
        except BadCharset as e:  # RFC 3501 §6.4.4: NO [BADCHARSET ...], not BAD
            reply = no(str(e))
        except BadMailboxName as e:  # a well-formed command naming a mailbox that cannot exist
            reply = no(str(e), "CANNOT")
        except ParseError as e:
            reply = bad(str(e))
        except FolderError as e:
            reply = no(str(e), e.code)
        except StoreError as e:
            log.error("imap.store_error", error=type(e).__name__)
            reply = no("store unavailable, try again", "UNAVAILABLE")
        except Exception as e:  # a store that cannot write: a tagged NO, the session (and reading) goes on
            if (fault := storefaults.classify(e)) is None:
                raise
            log.error("imap.store_failed", command=name, error=fault.error, space=fault.space)
            # RFC 5530 §3: LIMIT "ran up against an implementation limit" (the disk, not
            # the user's quota: OVERQUOTA would send them deleting mail), else SERVERBUG
            reply = (no("server storage full, try again later", "LIMIT") if fault.space
                     else no("server storage failure, try again later", "SERVERBUG"))
        command_seconds(name).observe(time.monotonic() - started)
        if reply is None:
            return
        if self.selected is not None and self.state != LOGOUT:  # nothing pending after BYE
            allow = name not in NO_UPDATES_AFTER
            await self.send(*await self.selected.updates(self.server.store, allow_expunge=allow))
        if self.notify is not None and self.state != LOGOUT:  # RFC 5465: other folders' STATUS
            await self.send(*await notifymod.pending_lines(self))
        code = f"[{reply.code}] " if reply.code else ""
        await self.send(f"{tag} {reply.status} {code}{reply.text}".encode("utf-8", "replace"), flush=True)

    async def bounded(self, name: str, handler: Handler, tag: str, p: Parser, uid: bool) -> Reply | None:
        """The handler, within imap.command_timeout (issue 10: no command may hold a
        session, a worker or the store for ever). Past it the command is cancelled
        where it waits (between chunks: long work yields or runs in a worker) and
        answered NO [LIMIT], RFC 9051 §7.1 (RFC 5530 §3): an administrative limit
        refused it; the session goes on. What the command wrote before (untagged
        FETCH data, flags already committed) stays: the next updates tell the client.
        IDLE is bounded by its own timeout."""
        if name in UNBOUNDED_COMMANDS:
            return await handler(self, tag, p, uid)
        limit = asyncio.timeout(self.server.config.imap_command_timeout)
        try:
            async with limit:
                return await handler(self, tag, p, uid)
        except TimeoutError:
            if not limit.expired():
                raise
            log.warning("imap.command_timeout", command=name)
            return no("commande trop longue, interrompue / command took too long and was stopped", "LIMIT")

    # ---- helpers --------------------------------------------------------------------

    def encode_name(self, name: str) -> bytes:
        return wire.astring(name if self.rev2 else utf7.encode(name))

    def _seqs(self, seqset: SequenceSet, uid: bool) -> list[int]:
        """Sequence numbers a set names in the current view (RFC 9051 §6.4.8 for UIDs:
        unknown UIDs are ignored)."""
        sel = self.selected
        assert sel is not None
        if not uid:
            # RFC 9051 §6.4.5: a message sequence number above EXISTS is an error
            for r in seqset.ranges:
                for n in (r.start, r.end):
                    if n is not None and n > sel.exists:
                        raise ParseError(f"no message {n}: the mailbox has {sel.exists}")
            return expand(seqset, sel.exists)
        # walk the session's UIDs inside each range: O(messages), never O(largest UID)
        largest = sel.uids[-1] if sel.uids else 0
        out: list[int] = []
        for lo, hi in intervals(seqset, largest):
            i = bisect.bisect_left(sel.uids, lo)
            while i < len(sel.uids) and sel.uids[i] <= hi:
                out.append(i + 1)
                i += 1
        return out

    async def check_access(self) -> None:
        """Before every command of a logged-in session: the account is still active and,
        when a child's folder is selected, the user is still that child's guardian and
        the child's mailbox still open. Rights withdrawn by the CLI (another process)
        thus apply to sessions already open, at their next command."""
        assert self.user is not None
        if self.selected_gone and self.selected is not None:
            raise Bye("the selected mailbox was deleted or renamed by another session")
        me = await self.server.store.cached_mailbox(self.user.ins)
        if me is None or me.state is not MailboxState.ACTIVE:
            raise Bye("this mailbox is no longer active")
        sel = self.selected
        if sel is not None and sel.owner.id != self.user.id:
            ward = next((w for w in await self.server.store.wards(self.user.id) if w.id == sel.owner.id), None)
            if ward is None or not ward.state.receives:
                raise Bye("access to this child's mailbox was withdrawn")

    @property
    def selected(self) -> Selected | None:
        return self._selected

    @selected.setter
    def selected(self, sel: Selected | None) -> None:
        self._selected = sel
        self.watch((sel.owner.id, sel.name) if sel is not None else None)

    def on_notify_change(self, change: Change) -> None:
        notifymod.on_change(self, change)
        if self._idle_poke is not None:
            self._idle_poke()

    def watch(self, key: FolderKey | None) -> None:
        """Receive the changes of this folder only (idlefan.py), or none."""
        if key != self._watching:
            self.server.fan.move(self.on_change, self._watching, key)
            self._watching = key

    def on_change(self, change: Change) -> None:
        """Called by the feed at publish time: only queue, never I/O (selected.py)."""
        if self._backlog is not None:
            if len(self._backlog) >= SELECT_BACKLOG_MAX:
                self._backlog_overflow = True
            else:
                self._backlog.append(change)
            return
        sel = self.selected
        if sel is None:
            return
        if change.kind in ("folder.deleted", "folder.renamed") and change.mailbox_id == sel.owner.id \
                and change.folder == sel.name:
            # the folder this session shows is gone: its UIDs mean nothing any more
            self.selected_gone = True
            sel.wake.set()
        else:
            sel.feed(change)
        if self._idle_poke is not None:
            self._idle_poke()


# ---- any state ------------------------------------------------------------------------

async def cmd_capability(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.end()
    await s.send(b"* CAPABILITY " + s.capabilities())
    return ok("CAPABILITY done")


async def cmd_noop(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.end()
    return ok("NOOP done")


async def cmd_logout(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.end()
    await s.send(b"* BYE logging out")
    s.state = LOGOUT
    return ok("LOGOUT done")


async def cmd_id(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    # RFC 2971: we answer with our name; what the client says is not logged (it can
    # identify a patient's device)
    p.sp()
    p.skip_rest()
    await s.send(b'* ID ("name" "mssante-relay" "vendor" "patient.mssante.fr")')
    return ok("ID done")


# ---- not authenticated ------------------------------------------------------------------

async def cmd_starttls(s: Session, tag: str, p: Parser, uid: bool) -> Reply | None:
    p.end()
    if s.tls:
        return bad("TLS already active")
    await s.send(f"{tag} OK begin TLS negotiation now".encode(), flush=True)
    # RFC 9051 §6.2.1: plaintext pipelined after STARTTLS must not be executed
    s.reader._buffer.clear()  # type: ignore[attr-defined]  # StreamReader has no public discard
    await s.writer.start_tls(s.server.tls_context)
    s.tls = True
    return None  # answered before the handshake


async def _authenticated(s: Session, login: str, password: str) -> Reply:
    result = await s.server.auth.login(login, password, s.peer)
    if result.reason == "throttled":  # RFC 5530 UNAVAILABLE: temporary, retry later
        return no(f"too many failed attempts from your network, retry in {result.retry_after} s", "UNAVAILABLE")
    if result.reason == "unavailable":
        return no("authentication unavailable, try again later", "UNAVAILABLE")
    if result.reason == "inactive":
        return no("mailbox not active", "CONTACTADMIN")
    if result.mailbox is None:
        return no("invalid credentials", "AUTHENTICATIONFAILED")
    if not s.server.admit_account(s, result.mailbox):
        return no("too many sessions for this account", "LIMIT")
    s.user = result.mailbox
    s.state = AUTH
    return ok("logged in", "CAPABILITY " + s.capabilities().decode())


async def cmd_login(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    login = p.astring()
    p.sp()
    password = p.astring()
    p.end()
    if not s.tls:
        return no("LOGIN only over TLS", "PRIVACYREQUIRED")
    return await _authenticated(s, login, password)


async def cmd_authenticate(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    mech = p.atom().upper()
    initial = None
    if not p.at_end():
        p.sp()
        initial = p.atom()
    p.end()
    if not s.tls:
        return no("AUTHENTICATE only over TLS", "PRIVACYREQUIRED")
    if mech != "PLAIN":
        return no(f"mechanism {mech} not supported", "CANNOT")
    if initial is None:  # RFC 4959: without SASL-IR, ask for it
        await s.send(b"+ ")
        line = await s.read_line(PRELOGIN_TIMEOUT)
        initial = line[:-2].decode("ascii", "replace")
    if initial == "*":
        return bad("authentication cancelled")
    try:
        decoded = base64.b64decode(initial if initial != "=" else "", validate=True)
        authzid, authcid, password = decoded.split(b"\x00")
        login, pwd = authcid.decode("utf-8"), password.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return bad("malformed PLAIN response (RFC 4616)")
    if authzid and authzid != authcid:
        return no("authorization identity must be the login", "AUTHORIZATIONFAILED")
    return await _authenticated(s, login, pwd)


# ---- authenticated ------------------------------------------------------------------

async def cmd_enable(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    enabled = []
    while not p.at_end():
        p.sp()
        cap = p.atom().upper()
        if cap == "IMAP4REV2" and not s.rev2:
            s.rev2 = True
            enabled.append(b"IMAP4rev2")
        elif cap in ("CONDSTORE", "QRESYNC") and not (s.qresync if cap == "QRESYNC" else s.condstore):
            await s.send(*condstore.enable(s, qresync=cap == "QRESYNC"))  # RFC 7162 §3.2.3
            enabled.append(cap.encode())
    await s.send(b"* ENABLED" + b"".join(b" " + c for c in enabled))
    return ok("ENABLE done")


async def cmd_namespace(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.end()
    # RFC 2342: personal, other users (children the user is a guardian of), shared
    await s.send(b'* NAMESPACE (("" "/")) (("' + OTHER_USERS.encode() + b'/" "/")) NIL')
    return ok("NAMESPACE done")


async def _select(s: Session, p: Parser, readonly: bool) -> Reply:
    p.sp()
    name = p.mailbox()
    params = condstore.SelectParams()
    if not p.at_end():  # RFC 4466 §2.1 select-params: (CONDSTORE), (QRESYNC (...)), RFC 7162
        p.sp()
        params = condstore.parse_select_params(p, s.qresync)
    p.end()
    assert s.user is not None
    if s.selected is not None and s.qresync:  # RFC 7162 §3.2.11
        await s.send(b"* OK [CLOSED] previous mailbox closed")
    s.selected = None
    s.state = AUTH
    if params.condstore:
        s.condstore = True
    owner, folder, own = await resolve(s, name)
    # listen first, then snapshot: a message delivered between the snapshot and the
    # view being in place is replayed into it, not lost (issue 12 §5); a change the
    # snapshot already holds replays as a no-op (Selected.updates skips known UIDs/flags)
    s._backlog, s._backlog_overflow = [], False
    s.watch((owner.id, folder))
    try:
        return await _open_view(s, name, owner, folder, own, readonly, params)
    finally:
        backlog, s._backlog = s._backlog, None
        if s._backlog_overflow:  # not seen in practice; a view missing changes is never shown
            raise Bye("trop de changements pendant SELECT / too many changes during SELECT")
        if s.selected is not None:
            for change in backlog or ():
                s.on_change(change)
        else:
            s.watch(None)


async def _open_view(s: Session, name: str, owner: MailboxInfo, folder: str, own: bool, readonly: bool,
                     params: condstore.SelectParams) -> Reply:
    snap = await s.server.store.snapshot(owner.id, folder)
    # a guardian reads (and answers by submission); deleting, moving or flagging the
    # child's mail is not theirs to do: a child's folder is always opened read-only
    readonly = readonly or not own
    sel = Selected.from_snapshot(owner, snap, readonly, client_name=name)
    sel.highestmodseq, sel.condstore, sel.qresync = snap.highestmodseq, s.condstore, s.qresync
    await recent.on_select(s.server.store, sel, snap, s.rev2)
    lines = [sel.flags_response(),
             b"* OK [PERMANENTFLAGS (" + (b"" if readonly else b" ".join(SYSTEM_FLAGS) + b" \\*") + b")] flags",
             b"* %d EXISTS" % sel.exists]
    if not s.rev2:
        lines.append(b"* %d RECENT" % len(sel.recent))
        first = sel.unseen_first()
        if first is not None:
            lines.append(b"* OK [UNSEEN %d] first unseen" % first)
    lines += [b"* OK [UIDVALIDITY %d] UIDs valid" % sel.uidvalidity,
              b"* OK [UIDNEXT %d] predicted next UID" % sel.uidnext]
    if s.rev2:
        lines.append(b'* LIST () "/" ' + s.encode_name(sel.client_name))
    if s.condstore:
        lines += condstore.select_lines(sel)
    if params.qresync is not None:
        lines += await condstore.qresync_lines(s, sel, params.qresync)
    await s.send(*lines)
    s.selected, s.selected_gone = sel, False
    s.state = SELECTED
    return ok("selected", "READ-ONLY" if readonly else "READ-WRITE")


async def cmd_select(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    return await _select(s, p, readonly=False)


async def cmd_examine(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    return await _select(s, p, readonly=True)


async def cmd_create(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    name = p.mailbox()
    p.end()
    assert s.user is not None
    try:
        await s.server.store.create_folder(s.user.id, await resolve_own(s, name))
    except FolderError as e:
        # RFC 5530 §3: ALREADYEXISTS, NOPERM, or CANNOT for a name that can never be
        # created ("..", ".", empty levels, control characters: mailbox_store/folders.py)
        return no(str(e), e.code)
    return ok("CREATE done")


async def cmd_delete(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    name = p.mailbox()
    p.end()
    assert s.user is not None
    folder = await resolve_own(s, name)
    if s.selected is not None and s.selected.owner.id == s.user.id and s.selected.name == folder:
        s.selected, s.state = None, AUTH
    await s.server.store.delete_folder(s.user.id, folder)
    return ok("DELETE done")


async def cmd_rename(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    old = p.mailbox()
    p.sp()
    new = p.mailbox()
    p.end()
    assert s.user is not None
    try:
        old_folder = await resolve_own(s, old)
        await s.server.store.rename_folder(s.user.id, old_folder, await resolve_own(s, new))
    except FolderError as e:
        # RFC 5530 §3: NONEXISTENT, ALREADYEXISTS, NOPERM, or CANNOT (a special-use
        # folder, or a new name that can never exist); the selection stays as it was
        return no(str(e), e.code)
    if s.selected is not None and s.selected.owner.id == s.user.id and s.selected.name == old_folder:
        s.selected, s.state = None, AUTH  # as for DELETE: the old name's view is over
    return ok("RENAME done")


async def cmd_subscribe(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    name = p.mailbox()
    p.end()
    assert s.user is not None
    await s.server.store.set_subscribed(s.user.id, await resolve_own(s, name), True)
    return ok("SUBSCRIBE done")


async def cmd_unsubscribe(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    name = p.mailbox()
    p.end()
    assert s.user is not None
    await s.server.store.set_subscribed(s.user.id, await resolve_own(s, name), False)
    return ok("UNSUBSCRIBE done")


def _matches(pattern: str, name: str) -> bool:
    """LIST wildcards (RFC 3501 §6.3.8): "*" matches anything, "%" anything but "/".

    Dynamic programming over (pattern, name) positions: O(len(pattern) x len(name)),
    whatever the wildcards. (A regular expression backtracked exponentially on runs of
    "*": 45 of them froze the event loop for 7 s.)"""
    # alive[j]: the pattern read so far matches name[:j]
    alive = [True] + [False] * len(name)
    for c in pattern:
        if c == "*" or c == "%":
            nxt = [False] * (len(name) + 1)
            reach = False
            for j in range(len(name) + 1):
                reach = reach or alive[j]
                if c == "%" and j > 0 and name[j - 1] == SEPARATOR and not alive[j]:
                    reach = False  # "%" does not cross the hierarchy separator
                nxt[j] = reach
            alive = nxt
        else:
            alive = [False] + [alive[j] and name[j] == c for j in range(len(name))]
        if not any(alive):
            return False
    return alive[len(name)]


STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "RECENT", "SIZE", "DELETED",
                "HIGHESTMODSEQ")


async def _visible_folders(s: Session) -> tuple[list[tuple[str, FolderInfo | None, MailboxInfo]], set[str]]:
    """Every name the user may list: own folders, then each ward's under the Other Users
    namespace (with the \\Noselect nodes above them, info None); and the user's
    subscriptions. One store read (mailbox_store/imapreads.py)."""
    assert s.user is not None
    view = await s.server.store.list_view(s.user.id)
    out: list[tuple[str, FolderInfo | None, MailboxInfo]] = [(f.name, f, s.user) for f in view.folders]
    if view.wards:
        out.append((OTHER_USERS, None, s.user))
    for ward, folders in view.wards:
        base = f"{OTHER_USERS}{SEPARATOR}{ward.ins}"
        out.append((base, None, ward))
        out += [(f"{base}{SEPARATOR}{f.name}", f, ward) for f in folders]
    return out, view.subscribed


async def cmd_list(s: Session, tag: str, p: Parser, uid: bool, lsub: bool = False) -> Reply:
    # RFC 5258 LIST-EXTENDED: LIST [(selection)] reference patterns [RETURN (options)]
    p.sp()
    selection: list[str] = []
    if not lsub and p.peek() == b"(":
        selection = [x.upper() for x in p.atom_list()]
        p.sp()
    reference = p.list_mailbox()
    p.sp()
    patterns = [x for x in p.list_mailbox_patterns()]
    returns: list[str] = []
    status_items: list[str] = []
    if not lsub and not p.at_end():
        p.sp()
        returns, status_items = p.list_return_options()
    p.end()
    for item in status_items:
        if item.upper() not in STATUS_ITEMS:
            return bad(f"unknown STATUS item {item[:40]}")
    status_items = [i.upper() for i in status_items]
    problem = listing.selection_problem(selection)
    if problem is not None:  # RFC 5258 §6: an invalid selection is a syntax error
        return bad(problem)
    if patterns == [""]:  # RFC 3501 §6.3.8: the hierarchy delimiter and root
        await s.send(b'* LIST (\\Noselect) "/" ""')
        return ok("LIST done")
    visible, subscribed = await _visible_folders(s)
    assert s.user is not None
    folders = {name: (f, owner) for name, f, owner in visible}
    nodes = [listing.Node(name, f is not None, f.special_use if f is not None else None)
             for name, f, _ in visible if not (lsub and f is None)]  # namespace nodes: no LSUB
    full = [reference + pat if pat.upper() != "INBOX" else pat for pat in patterns]

    def matches(name: str) -> bool:
        return any(_matches(pat, name) or (pat.upper() == "INBOX" and name == "INBOX") for pat in full)

    verb = b"LSUB" if lsub else b"LIST"
    for e in listing.entries(nodes, subscribed, matches, lsub=lsub, selection=set(selection),
                             returns=set(returns)):
        line = b"* " + verb + b" " + wire.plist([a.encode() for a in e.attrs]) + b' "/" ' + s.encode_name(e.name)
        if e.childinfo:  # RFC 5258 §3.5
            line += b' ("CHILDINFO" ("SUBSCRIBED"))'
        await s.send(line)
        f, owner = folders.get(e.name, (None, s.user))
        if status_items and f is not None:  # RFC 5819 LIST-STATUS
            await s.send(await status_line(s, owner, f, e.name, status_items))
    return ok(f"{'LSUB' if lsub else 'LIST'} done")


async def cmd_lsub(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    return await cmd_list(s, tag, p, uid, lsub=True)


async def cmd_status(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    name = p.mailbox()
    p.sp()
    items = [x.upper() for x in p.atom_list()]
    p.end()
    for item in items:
        if item not in STATUS_ITEMS:
            return bad(f"unknown STATUS item {item}")
    owner, folder, _own = await resolve(s, name)
    f = await s.server.store.folder(owner.id, folder)
    if f is None:
        return no(f"no folder {name}", "NONEXISTENT")
    if "HIGHESTMODSEQ" in items:  # RFC 7162 §3.1: a CONDSTORE-enabling command
        await s.send(*condstore.enable(s))
    await s.send(await status_line(s, owner, f, name, items))
    return ok("STATUS done")


async def cmd_idle(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.end()
    await s.send(b"+ idling")
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + s.server.config.imap_idle_timeout
    # the IDLE deadline below bounds the wait; read_line adds the length check
    line_task = asyncio.ensure_future(s.read_line(s.server.config.imap_idle_timeout + 60))
    stop = asyncio.ensure_future(s.server.stopped.wait())
    # One future per wait, resolved by whichever comes first: a change (on_change pokes
    # it), the client's line, the server stopping, the timer. 10,000 idle sessions woken
    # by one delivery each paid for two tasks, asyncio.wait's bookkeeping and a store
    # lookup before their update (issue 12); now one future each.
    waiter: asyncio.Future[None] | None = None

    def poke(_: object = None) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    line_task.add_done_callback(poke)
    stop.add_done_callback(poke)
    checked = time.monotonic()
    try:
        while True:
            sel = s.selected
            if s.selected_gone and sel is not None:
                raise Bye("the selected mailbox was deleted or renamed by another session")
            if sel is not None and sel.has_pending:
                await s.send(*await sel.updates(s.server.store, allow_expunge=True))
            if s.notify is not None and s.notify.pending:  # RFC 5465 §5: told while idling too
                await s.send(*await notifymod.pending_lines(s))
            if line_task.done():
                line = line_task.result()
                if line.strip().upper() != b"DONE":
                    return bad("expected DONE")
                return ok("IDLE terminated")
            if stop.done():
                raise Bye("server shutting down")
            now = time.monotonic()
            if now >= deadline:
                raise Bye("autologout: idle for too long")
            # rights withdrawn while idling end the session too, checked every
            # ACCESS_RECHECK seconds after the updates, never before them
            if now >= checked + ACCESS_RECHECK:
                await s.check_access()
                checked = now = time.monotonic()
            if (sel is not None and sel.has_pending) or (s.notify is not None and s.notify.pending):
                continue  # arrived during the sends above
            waiter = loop.create_future()
            s._idle_poke = poke
            timer = loop.call_later(max(min(deadline, checked + ACCESS_RECHECK) - now, 0), poke)
            try:
                await waiter
            finally:
                timer.cancel()
                s._idle_poke = None
                waiter = None
    finally:
        for task in (line_task, stop):
            if not task.done():
                task.cancel()


# ---- selected -----------------------------------------------------------------------

async def cmd_check(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.end()
    return ok("CHECK done")


async def cmd_close(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.end()
    sel = s.selected
    assert sel is not None and s.user is not None
    if not sel.readonly:  # RFC 3501 §6.4.2: silent expunge
        await _expunge(s, sel)
    s.selected, s.state = None, AUTH
    return ok("CLOSE done")


async def cmd_unselect(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.end()
    s.selected, s.state = None, AUTH
    return ok("UNSELECT done")


async def cmd_expunge(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    only = None
    if uid:  # RFC 4315 §2.1 UID EXPUNGE
        p.sp()
        seqset = p.sequence_set()
        sel = s.selected
        assert sel is not None
        only = [sel.uids[i - 1] for i in s._seqs(seqset, uid=True)]
    p.end()
    sel = s.selected
    assert sel is not None
    if sel.readonly:
        return no("mailbox is read-only", "READ-ONLY")
    for u in await _expunge(s, sel, only):
        sel.feed(_expunged(sel, u))
    return ok("EXPUNGE done")


async def _expunge(s: Session, sel: Selected, only: list[int] | None = None) -> list[int]:
    """The UIDs an EXPUNGE removed (RFC 3501 §6.4.3, RFC 4315 §2.1 with `only`).

    When the view knows every message of the folder and none is flagged \\Deleted, the
    store is not asked: the EXPUNGE removes nothing, and answering without a write
    transaction is what it would have answered. Why (issue 12 §3): in imaptest's stress
    about half the EXPUNGEs find nothing to remove (other sessions removed it first),
    and each one cost the writer a transaction and the session two thread hops."""
    if s.server.store.hears_every_change and not sel.may_hold_deleted(only):
        return []
    return await s.server.store.expunge(sel.owner.id, sel.name, only)


def _expunged(sel: Selected, uid: int) -> Change:
    return Change("message.expunged", sel.owner.id, sel.name, uid)


async def cmd_search(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    ret = p.search_return_opts(contextsearch.RETURN_OPTS, partial=True)  # RFC 4731, RFC 5267; None: absent
    returns = list(ret.opts) if ret is not None else None
    if returns is not None:
        p.sp()
    _charset, key = p.search_program()
    p.end()
    sel = s.selected
    assert sel is not None
    by_modseq = condstore.uses_modseq(key)
    if by_modseq:
        await s.send(*condstore.enable(s))  # RFC 7162 §3.1: CONDSTORE-enabling
    views = await matching_views(s, key)
    hits = [v.uid if uid else v.seq for v in views]
    modseq = b""
    if by_modseq and hits:  # RFC 7162 §3.1.5: the highest modseq of what is returned
        modseq = b"%d" % condstore.hits_modseq(sel, hits, uid, returns)
    if returns is None and not s.rev2:
        await s.send(b"* SEARCH" + b"".join(b" %d" % h for h in hits) + (b" (MODSEQ " + modseq + b")"
                                                                            if modseq else b""))
    else:  # RFC 4731 / RFC 9051 §7.3.4 ESEARCH
        opts = returns or ["ALL"]
        parts = [b'(TAG "' + tag.encode() + b'")'] + ([b"UID"] if uid else [])
        if "MIN" in opts and hits:
            parts.append(b"MIN %d" % min(hits))
        if "MAX" in opts and hits:
            parts.append(b"MAX %d" % max(hits))
        if "ALL" in opts and hits:
            parts.append(b"ALL " + compress(hits).encode())
        if "COUNT" in opts:
            parts.append(b"COUNT %d" % len(hits))
        if ret is not None and ret.partial is not None:
            parts.append(contextsearch.partial_part(hits, ret.partial))
        if modseq:
            parts.append(b"MODSEQ " + modseq)
        if "UPDATE" in opts and not contextsearch.start(sel, tag, uid, key, [v.uid for v in views],
                                                        lambda n: s.server.audit_read(s, n)):
            return no("trop de recherches suivies / too many searches kept up to date", "LIMIT")
        await s.send(b"* ESEARCH " + b" ".join(parts))
    return ok("SEARCH done")


async def cmd_cancelupdate(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    """RFC 5267 §4.3.5: end the updates of the searches these tags started."""
    tags = contextsearch.parse_cancel(p)
    assert s.selected is not None
    unknown = contextsearch.cancel(s.selected, tags)
    if unknown:
        return bad("aucune recherche suivie avec cette etiquette / no search kept up to date with that tag")
    return ok("CANCELUPDATE done")


async def cmd_fetch(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    seqset = p.sequence_set()
    p.sp()
    atts = p.fetch_atts()
    mods = condstore.FetchModifiers()
    if not p.at_end():  # RFC 4466 §2.4 fetch-modifiers (RFC 7162 CHANGEDSINCE, VANISHED)
        p.sp()
        mods = condstore.parse_fetch_modifiers(p)
        condstore.require_uid(uid, mods)
    p.end()
    sel = s.selected
    assert sel is not None
    if mods.vanished and not s.qresync:
        return bad("VANISHED exige ENABLE QRESYNC / VANISHED needs QRESYNC enabled")
    if uid and not any(a.name == "UID" for a in atts):
        atts = [FetchAtt("UID"), *atts]
    if mods.changedsince is not None or any(a.name == "MODSEQ" for a in atts):
        await s.send(*condstore.enable(s))  # RFC 7162 §3.1: CONDSTORE-enabling
    if s.condstore and not any(a.name == "MODSEQ" for a in atts) and (
            mods.changedsince is not None or any(a.name == "FLAGS" for a in atts)):
        atts = [*atts, FetchAtt("MODSEQ")]  # RFC 7162 §3.1.4.1, §3.2: FLAGS come with their MODSEQ
    need = fetchmod.needs_content(atts)
    mark_seen = fetchmod.sets_seen(atts) and not sel.readonly
    with_flags = atts if any(a.name == "FLAGS" for a in atts) else [*atts, FetchAtt("FLAGS")]
    reads = 0
    seqs = s._seqs(seqset, uid)
    if mods.vanished:
        await s.send(*await condstore.vanished_lines(s, sel, seqset, mods.changedsince or 0))
    if mods.changedsince is not None:
        seqs = [i for i in seqs if sel.meta[sel.uids[i - 1]].modseq > mods.changedsince]
    names = frozenset(n for a in atts if (n := fetchcache.derived_name(a)) is not None)
    if need and names and not mark_seen and not fetchmod.needs_content(
            [a for a in atts if fetchcache.derived_name(a) is None]):
        # only ENVELOPE / BODYSTRUCTURE / BODY besides the view's items: rendered once per
        # message and cached (fetchcache.py); a cached read is still a read (audited)
        for chunk in _chunks(sel, seqs, need):
            reads += await _fetch_derived(s, sel, chunk, atts, names)
        if reads:
            await s.server.audit_read(s, reads)
        return ok("FETCH done")
    for chunk in _chunks(sel, seqs, need):
        raws = (await s.server.store.fetch_raw_many(sel.owner.ins, sel.name, [sel.uids[i - 1] for i in chunk])
                if need else {})
        unseen: set[int] = set()
        if mark_seen:
            unseen = {sel.uids[i - 1] for i in chunk if SEEN not in sel.meta[sel.uids[i - 1]].flags}
            if unseen:
                done = await s.server.store.store_flags_if(sel.owner.id, sel.name, sorted(unseen), "+", [SEEN])
                for u, flags in done.flags.items():
                    sel.set_flags(u, flags, done.modseqs.get(u, 0))
        group: list[tuple[MessageView, bytes | None, list[FetchAtt]]] = []
        group_size = 0
        for seq in chunk:
            view = sel.view(seq)
            raw = raws.pop(view.uid, None)  # let each message go once written
            if need and raw is None:
                continue  # expunged by another session, not yet announced (RFC 2180 §4.1.2)
            reads += raw is not None
            # RFC 3501 §6.4.5: a fetch that sets \\Seen returns the new FLAGS
            group.append((view, raw, with_flags if view.uid in unseen else atts))
            group_size += len(raw) if raw is not None else 64
            if group_size > SEND_BATCH_BYTES:  # rendered and written in batches, bounded in memory
                if not await _send_rendered(s, group, need, group_size):
                    return no("cannot decode this part", "UNKNOWN-CTE")
                group, group_size = [], 0
        if not await _send_rendered(s, group, need, group_size):
            return no("cannot decode this part", "UNKNOWN-CTE")
        if not need:
            await asyncio.sleep(0)  # between chunks, other sessions' commands run
    if reads:
        await s.server.audit_read(s, reads)
    return ok("FETCH done")


async def _fetch_derived(s: Session, sel: Selected, chunk: list[int], atts: list[FetchAtt],
                         names: frozenset[bytes]) -> int:
    """One chunk of a FETCH whose content items are all derived (fetchcache.py): cached
    items as they are, the others from one decryption and parse each, in a worker
    thread, then cached. Returns the number of messages answered."""
    cache = s.server.derived_cache
    uids = [sel.uids[i - 1] for i in chunk]
    blobs, ask = sel.known_blobs(uids)  # a second FETCH of the same messages: no store read
    if ask:
        asked = await s.server.store.blob_ids(sel.folder_id, ask)
        sel.learn_blobs(asked)
        blobs.update(asked)
    known: dict[int, dict[bytes, bytes]] = {}
    missing: list[int] = []
    for u in uids:
        blob = blobs.get(u)
        if blob is None:
            continue  # expunged by another session, not yet announced (RFC 2180 §4.1.2)
        got = cache.get(blob, names)
        if got is None:
            missing.append(u)
        else:
            known[u] = got
    if missing:
        raws = await s.server.store.fetch_raw_many(sel.owner.ins, sel.name, missing)
        items = list(raws.items())
        del raws
        work = lambda: [(u, fetchmod.derive(raw, names)) for u, raw in items]  # noqa: E731
        # small ones here, as in _send_rendered: the hop would cost more than the parse
        derived = (work() if sum(len(raw) for _, raw in items) <= INLINE_RENDER_BYTES
                   else await s.server.offload(work))
        del items
        for u, values in derived:
            cache.put(blobs[u], values)
            known[u] = values
    rev2 = s.rev2
    views = [(sel.view(seq), known[u]) for seq, u in zip(chunk, uids, strict=True) if u in known]

    def render() -> list[bytes]:
        planned = fetchmod.plan(atts)
        return [b"* %d FETCH " % view.seq + fetchmod.render(view, atts, None, rev2, values, planned)
                for view, values in views]

    # header items are cut from a parse of the header block (kept, fetch.py): many
    # blocks not parsed yet are parsed in a worker
    heads = fetchmod.unparsed_header_bytes([values[fetchmod.HEADER] for _, values in views
                                            if fetchmod.HEADER in values]) if fetchmod.HEADER in names else 0
    lines = await s.server.offload(render) if heads > INLINE_RENDER_BYTES else render()
    await s.send(*lines)
    return len(lines)


async def _send_rendered(s: Session, group: list[tuple[MessageView, bytes | None, list[FetchAtt]]],
                         need: bool, size: int) -> bool:
    """Render and send one batch of FETCH responses; False on a part we cannot decode.
    With bodies (ENVELOPE, BODYSTRUCTURE, sections) rendering parses messages: long
    work, done in a worker thread so that other sessions are not held up; a batch of
    at most INLINE_RENDER_BYTES is rendered here (a few hundred microseconds), since a
    hop to a worker and back cost the event loop more than that under imaptest's
    stress (issue 12 §3: thread wake-ups were a third of the loop's GIL samples)."""
    if not group:
        return True
    rev2 = s.rev2

    def render() -> list[bytes]:
        plans: dict[int, fetchmod.Plan] = {}  # by list: the group's messages share one or two
        return [b"* %d FETCH " % view.seq + fetchmod.render(
                    view, atts, raw, rev2=rev2,
                    planned=plans.get(id(atts)) or plans.setdefault(id(atts), fetchmod.plan(atts)))
                for view, raw, atts in group]

    try:
        lines = await s.server.offload(render) if need and size > INLINE_RENDER_BYTES else render()
    except fetchmod.UnknownCte:
        return False
    await s.send(*lines)
    return True


async def cmd_store(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    p.sp()
    seqset = p.sequence_set()
    p.sp()
    unchanged: int | None = None
    if p.peek() == b"(":  # RFC 7162 §3.1.3 (UNCHANGEDSINCE n)
        unchanged = condstore.parse_store_modifiers(p)
        p.sp()
    item = p.atom().upper()
    mode = item[0] if item[0] in "+-" else ""
    base = item.lstrip("+-")
    if base not in ("FLAGS", "FLAGS.SILENT"):
        return bad(f"unknown STORE item {item}")
    p.sp()
    flags = p.flag_list(allow_recent=False, parenthesised_optional=True)
    p.end()
    sel = s.selected
    assert sel is not None
    if sel.readonly:
        return no("mailbox is read-only", "READ-ONLY")
    if unchanged is not None:
        await s.send(*condstore.enable(s))  # RFC 7162 §3.1: CONDSTORE-enabling
    seqs = s._seqs(seqset, uid)
    uids = [sel.uids[i - 1] for i in seqs]
    done = await s.server.store.store_flags_if(sel.owner.id, sel.name, uids, mode, flags, unchanged)
    new, failed = done.flags, set(done.modified)
    lines: list[bytes] = sel.learn_keywords(new.values())  # RFC 3501 §7.2.6: FLAGS first
    for i, (seq, u) in enumerate(zip(seqs, uids, strict=True)):
        if u in new and u not in failed:
            before = sel.meta[u].modseq
            sel.set_flags(u, new[u], done.modseqs.get(u, 0))
            uid_part = b"UID %d " % u if uid else b""
            modseq = b" MODSEQ (%d)" % sel.meta[u].modseq if s.condstore else b""
            if base == "FLAGS":
                lines.append(b"* %d FETCH (%sFLAGS %s%s)" % (seq, uid_part, sel.flags_of(u, new[u]), modseq))
            elif s.condstore and sel.meta[u].modseq != before:  # RFC 7162 §3.1.3: .SILENT still tells the modseq
                lines.append(b"* %d FETCH (%sMODSEQ (%d))" % (seq, uid_part, sel.meta[u].modseq))
        if i % FETCH_CHUNK == FETCH_CHUNK - 1:  # in batches, between which other sessions run
            await s.send(*lines)
            lines = []
            await asyncio.sleep(0)
    await s.send(*lines)
    if failed:  # RFC 7162 §3.1.3: the messages left alone, as the command numbered them
        return ok("conditional STORE done", "MODIFIED " + compress(
            u if uid else seq for seq, u in zip(seqs, uids, strict=True) if u in failed))
    return ok("STORE done")


async def _copy(s: Session, p: Parser, uid: bool, move: bool) -> Reply:
    p.sp()
    seqset = p.sequence_set()
    p.sp()
    target = p.mailbox()
    p.end()
    sel = s.selected
    assert sel is not None
    if move and sel.readonly:
        return no("mailbox is read-only", "READ-ONLY")
    owner, target_folder, _own = await resolve(s, target)
    if owner.id != sel.owner.id:  # the wrapped keys are per mailbox
        return no("copy between two patients' mailboxes is not possible", "CANNOT")
    seqs = s._seqs(seqset, uid)
    uids = [sel.uids[i - 1] for i in seqs]
    result = await s.server.store.copy(sel.owner.id, sel.name, uids, target_folder, move=move)
    if not result.pairs:
        return ok("nothing to do")
    if target_folder == DOSSIER_FOLDER:
        await _file_in_dossier(s, owner, [dst for _, dst in result.pairs])
    code = "COPYUID %d %s %s" % (result.uidvalidity, compress(x for x, _ in result.pairs),
                                 compress(y for _, y in result.pairs))
    if move:  # RFC 6851 §4.3: COPYUID in an untagged OK, then the expunges
        await s.send(f"* OK [{code}] moved".encode())
        for src, _ in result.pairs:
            sel.feed(_expunged(sel, src))
        return ok("MOVE done")
    return ok("COPY done", code)


async def _file_in_dossier(s: Session, owner: MailboxInfo, uids: list[int]) -> None:
    """Issue 5 §4: a message copied or moved into "Dossier médical" files its
    attachments. The copy is done whatever happens here; a failure is logged."""
    assert s.user is not None
    actor = "patient" if owner.id == s.user.id else f"guardian:{s.user.ins}"
    try:
        await file_messages(s.server.store, owner, DOSSIER_FOLDER, uids, s.server.config.attachments, actor,
                            s.peer)
    except Exception as e:
        log.error("dossier.filing_failed", error=type(e).__name__)


async def cmd_copy(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    return await _copy(s, p, uid, move=False)


async def cmd_move(s: Session, tag: str, p: Parser, uid: bool) -> Reply:
    return await _copy(s, p, uid, move=True)


ANY_STATE: dict[str, Handler] = {"CAPABILITY": cmd_capability, "NOOP": cmd_noop, "LOGOUT": cmd_logout,
                                 "ID": cmd_id}
_AUTH_COMMANDS: dict[str, Handler] = {
    "ENABLE": cmd_enable, "NAMESPACE": cmd_namespace, "SELECT": cmd_select, "EXAMINE": cmd_examine,
    "CREATE": cmd_create, "DELETE": cmd_delete, "RENAME": cmd_rename, "SUBSCRIBE": cmd_subscribe,
    "UNSUBSCRIBE": cmd_unsubscribe, "LIST": cmd_list, "LSUB": cmd_lsub, "STATUS": cmd_status,
    "APPEND": appendmod.cmd_append, "IDLE": cmd_idle, "NOTIFY": notifymod.cmd_notify,
}
TABLES: dict[str, dict[str, Handler]] = {
    NOT_AUTH: {"STARTTLS": cmd_starttls, "LOGIN": cmd_login, "AUTHENTICATE": cmd_authenticate},
    AUTH: _AUTH_COMMANDS,
    SELECTED: {**_AUTH_COMMANDS, "CHECK": cmd_check, "CLOSE": cmd_close, "UNSELECT": cmd_unselect,
               "EXPUNGE": cmd_expunge, "SEARCH": cmd_search, "FETCH": cmd_fetch, "STORE": cmd_store,
               "COPY": cmd_copy, "MOVE": cmd_move, "SORT": ordering.cmd_sort, "THREAD": ordering.cmd_thread,
               "CANCELUPDATE": cmd_cancelupdate},
    LOGOUT: {},
}
PRELOGIN_TIMEOUT = 60.0  # seconds a client may stay silent before logging in
PRELOGIN_LITERAL = 8192  # largest literal before login (a password, not a message)
SELECT_BACKLOG_MAX = 100_000  # changes kept for a SELECT under way (a few in practice)
HOLD_MAX = 65536  # octets of a command's responses held before they are written anyway
SPOOL_MIN = 65536  # an APPEND message larger than this is sealed into the spool as it arrives
# spool files (one open descriptor each) of one command: the messages of a MULTIAPPEND
# beyond them are held in memory within the line budget, as any other literal
MAX_SPOOLS = 16
LITERAL_PIECE = 65536  # literal octets read (and sealed) at a time
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only (Session._quickack)
ACCESS_RECHECK = 30.0  # seconds between rights checks while a session idles
SEND_BATCH_BYTES = 256 * 1024  # messages loaded, rendered and written together
INLINE_RENDER_BYTES = 64 * 1024  # FETCH batches this small are rendered on the event loop (~0.2 ms)
UNBOUNDED_COMMANDS = {"IDLE"}  # waits for the client, with its own timeout
UID_COMMANDS = {"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "SORT", "THREAD"}
# RFC 3501 §7.4.1: no EXPUNGE responses while the client may hold sequence numbers
NO_UPDATES_AFTER = {"FETCH", "STORE", "SEARCH", "SORT", "THREAD"}
