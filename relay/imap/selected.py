"""The selected mailbox as one IMAP session sees it, and how other sessions' changes
reach it (RFC 3501 §5.2, §7.4.1; RFC 9051 §5.2).

Implementation notes:
- The session's view (sequence numbers -> UIDs, flags) changes only when the session
  tells the client: a new message becomes visible with EXISTS, an expunged one
  disappears with EXPUNGE. Between two such announcements sequence numbers are stable,
  whatever other sessions or the MX do.
- Changes arrive on the store's feed after their commit. They are queued here and
  announced at the next point where the protocol allows it: EXPUNGE never during
  FETCH, STORE or SEARCH (RFC 3501 §7.4.1), since the client would misnumber messages.
"""
from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailbox_store.feed import Change
from mailbox_store.feed import MessageMeta
from mailbox_store.messages import Snapshot
from mailbox_store.store import MailboxInfo, Store
from relay.imap import contextsearch, wire
from relay.imap.sequence import compress
from relay.imap.types import MessageView


SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
UPDATE_SLICE = 512  # changes worked through between two yields to the event loop
BLOBS_KEPT = 20_000  # blob ids of its messages a view remembers (fetchcache.py keys)
_OWN_CLAIMS = 64  # APPEND claims a session keeps until they are announced


def flag_list(flags: frozenset[str]) -> bytes:
    return wire.plist([f.encode() for f in sorted(flags)])


@dataclass
class Selected:
    owner: MailboxInfo
    name: str
    folder_id: int
    uidvalidity: int
    uidnext: int
    readonly: bool
    client_name: str = ""  # the name the client selected ("Other Users/<INS>/INBOX" for a guardian)
    uids: list[int] = field(default_factory=list)
    meta: dict[int, MessageMeta] = field(default_factory=dict)
    _expunged: set[int] = field(default_factory=set)
    _flag_changes: dict[int, frozenset[str] | None] = field(default_factory=dict)
    _new: dict[int, MessageMeta | None] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # RFC 3501 §2.3.2: the UIDs this session got as \\Recent (recent.py); shown as a flag
    # and counted in "* n RECENT" unless IMAP4rev2 is enabled (RFC 9051 removed it)
    recent: set[int] = field(default_factory=set)
    show_recent: bool = True
    # UID ranges [first, below) this session claimed with its own APPENDs (append.py),
    # not announced yet: when announced they are its \\Recent ones, with no claim of their own
    own_claims: list[tuple[int, int]] = field(default_factory=list)
    # RFC 3501 §7.2.6: the keywords named in the last FLAGS response; a message showing one
    # the client was not told of first gets a new FLAGS response (imaptest checks it)
    keywords: set[str] = field(default_factory=set)
    # RFC 7162: the HIGHESTMODSEQ the client was told of, and what the session enabled
    highestmodseq: int = 0
    condstore: bool = False
    qresync: bool = False
    _modseqs: dict[int, int] = field(default_factory=dict)  # modseqs of pending flag changes
    _pending_modseq: int = 0
    # RFC 5267 §4: the live SEARCH RETURN (UPDATE)s of this view, and the UIDs changed or
    # announced since they were last matched (kept only while one is live: contextsearch.py)
    searches: list[contextsearch.LiveSearch] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)
    # the sealed blob of messages of this view FETCHed before (fetchcache.py's key): a
    # UID's bytes never change within a UIDVALIDITY, so the second FETCH of the same
    # messages asks the store nothing (issue 12 §3); bounded by BLOBS_KEPT
    blobs: dict[int, str] = field(default_factory=dict)

    @classmethod
    def from_snapshot(cls, owner: MailboxInfo, snap: Snapshot, readonly: bool,
                      client_name: str = "") -> "Selected":
        sel = cls(owner, snap.name, snap.folder_id, snap.uidvalidity, snap.uidnext, readonly,
                  client_name or snap.name, [m.uid for m in snap.messages], {m.uid: m for m in snap.messages})
        sel.learn_keywords(m.flags for m in snap.messages)
        return sel

    # ---- the view ----------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def view(self, seq: int) -> MessageView:
        uid = self.uids[seq - 1]
        m = self.meta[uid]
        return MessageView(seq=seq, uid=uid, flags=m.flags, internal_date=m.internal_date, size=m.size,
                           recent=uid in self.recent, modseq=m.modseq)

    def flags_response(self) -> bytes:
        """The untagged FLAGS response: the system flags and every keyword in use."""
        return b"* FLAGS " + wire.plist([f.encode() for f in SYSTEM_FLAGS] +
                                        [k.encode() for k in sorted(self.keywords)])

    def learn_keywords(self, flag_sets: Iterable[frozenset[str]]) -> list[bytes]:
        """A FLAGS response to send first when these flags hold keywords the client
        was not told of (RFC 3501 §7.2.6), else nothing."""
        new = {f for flags in flag_sets for f in flags if not f.startswith("\\")} - self.keywords
        if not new:
            return []
        self.keywords |= new
        return [self.flags_response()]

    def flags_of(self, uid: int, flags: frozenset[str]) -> bytes:
        """A FLAGS list as this session shows it: with \\Recent when the message is."""
        return flag_list(flags | {"\\Recent"} if self.show_recent and uid in self.recent else flags)

    async def claim_recent(self, store: Store, uids: list[int], below_uid: int) -> None:
        """After uids became visible: those this session is the first to see are its
        \\Recent ones (a read-only session claims nothing, RFC 3501 §6.3.2)."""
        if self.readonly or not uids:
            return
        claimed = self.own_claims
        if claimed and below_uid <= max(b for _, b in claimed):
            first = below_uid  # an APPEND of this session claimed them already (and got what it got)
        else:
            first = await store.claim_recent(self.folder_id, below_uid, self.uidvalidity)
        self.recent.update(u for u in uids if u >= first or any(f <= u < b for f, b in claimed))
        # announced up to below_uid: the ranges below it are spent
        self.own_claims = [(f, b) for f, b in claimed if b > below_uid]

    def claimed_by_append(self, first: int, below: int) -> None:
        """An APPEND to this folder claimed [first, below) in its own transaction."""
        if first < below and not self.readonly:
            self.own_claims.append((first, below))
            del self.own_claims[:-_OWN_CLAIMS]  # bounded: the oldest are announced long since

    def set_flags(self, uid: int, flags: frozenset[str], modseq: int = 0) -> None:
        m = self.meta.get(uid)
        if m is not None:
            self.meta[uid] = MessageMeta(m.uid, flags, m.internal_date, m.size, max(modseq, m.modseq))
            if self.searches:
                self.touched.add(uid)

    def known_blobs(self, uids: list[int]) -> tuple[dict[int, str], list[int]]:
        """The blob ids this view knows of those UIDs, and the UIDs to ask the store
        about: unknown ones, and those another session expunged that this one has not
        announced yet (the store tells they are gone: RFC 2180 §4.1.2, as before)."""
        known: dict[int, str] = {}
        ask: list[int] = []
        for u in uids:
            blob = self.blobs.get(u)
            if blob is None or u in self._expunged:
                ask.append(u)
            else:
                known[u] = blob
        return known, ask

    def learn_blobs(self, blobs: dict[int, str]) -> None:
        if len(self.blobs) + len(blobs) > BLOBS_KEPT:
            self.blobs.clear()  # bounded: the next FETCHes ask the store again
        if len(blobs) <= BLOBS_KEPT:
            self.blobs.update(blobs)

    def unseen_first(self) -> int | None:
        for i, uid in enumerate(self.uids):
            if "\\Seen" not in self.meta[uid].flags:
                return i + 1
        return None

    # ---- changes from the feed ----------------------------------------------------------

    def feed(self, change: Change) -> None:
        if change.mailbox_id != self.owner.id or change.folder != self.name:
            return
        self._pending_modseq = max(self._pending_modseq, change.modseq)
        if change.kind == "message.new":
            self._new[change.uid] = change.meta
        elif change.kind == "message.expunged":
            self._expunged.add(change.uid)
            self._new.pop(change.uid, None)
        elif change.kind == "message.flags":
            pending = self._new.get(change.uid)
            if change.uid in self._new:
                # not announced yet: it will be announced with these flags
                self._new[change.uid] = None if pending is None or change.flags is None else \
                    MessageMeta(pending.uid, change.flags, pending.internal_date, pending.size,
                                max(pending.modseq, change.modseq))
            else:
                self._flag_changes[change.uid] = change.flags
                self._modseqs[change.uid] = max(self._modseqs.get(change.uid, 0), change.modseq)
        else:
            return
        self.wake.set()

    def may_hold_deleted(self, uids: list[int] | None = None) -> bool:
        """Whether a message of the folder (among `uids`, for UID EXPUNGE) may be
        flagged \\Deleted as far as this view knows: its flags as announced, the flag
        changes queued for it, and the messages not announced yet. False only when
        every one of them is known and none is, so an EXPUNGE would remove nothing;
        meaningful only when the store hears every change (Store.hears_every_change)."""
        def deleted(flags: frozenset[str] | None) -> bool:
            return flags is None or "\\Deleted" in flags  # None: published without its flags

        changed = self._flag_changes
        if uids is None:
            if any(deleted(m.flags if m is not None else None) for m in self._new.values()):
                return True
            if any(deleted(f) for f in changed.values()):
                return True
            return any("\\Deleted" in m.flags for m in self.meta.values())
        for u in uids:
            if u in changed:
                if deleted(changed[u]):
                    return True
            else:
                m = self.meta.get(u)
                if m is not None and "\\Deleted" in m.flags:
                    return True
        return False

    @property
    def has_pending(self) -> bool:
        return bool(self._new or self._expunged or self._flag_changes)

    async def updates(self, store: Store, allow_expunge: bool) -> list[bytes]:
        """Untagged responses announcing what changed since the last call."""
        self.wake.clear()
        if not (self._new or self._flag_changes or (allow_expunge and self._expunged)
                or (self.searches and self.touched)):
            # nothing to announce, the case of most commands: the same answer as below
            # without its steps (issue 12 §3: this ran after every command)
            if not self.has_pending:
                self.highestmodseq = max(self.highestmodseq, self._pending_modseq)
            return []
        out: list[bytes] = []
        if allow_expunge and self._expunged:
            gone, self._expunged = self._expunged, set()
            out += contextsearch.removed(self, gone)  # RFC 5267 §4.3: before the EXPUNGEs
            # highest first keeps the other announced numbers right (RFC 3501 §7.4.1):
            # deleting a higher number never moves a lower one, so every number is
            # read from the view as it was, and the view is rebuilt once (a del per
            # message was quadratic for an EXPUNGE of 10,000)
            vanished: list[int] = []
            for i, uid in enumerate(sorted(gone, reverse=True)):
                seq = self.seq_of(uid)
                if seq is not None:
                    if self.qresync:  # RFC 7162 §3.2.10: VANISHED instead of EXPUNGE
                        vanished.append(uid)
                    else:
                        out.append(b"* %d EXPUNGE" % seq)
                    self.meta.pop(uid, None)
                    self.recent.discard(uid)
                    self.blobs.pop(uid, None)
                if i % UPDATE_SLICE == UPDATE_SLICE - 1:
                    await asyncio.sleep(0)  # a long list of changes lets other sessions run
            if vanished:
                out.append(b"* VANISHED " + compress(vanished).encode())
            self.uids = [u for u in self.uids if u not in gone]
        if self._flag_changes:
            changes, self._flag_changes = self._flag_changes, {}
            modseqs, self._modseqs = self._modseqs, {}
            changes = {u: f for u, f in changes.items() if u in self.meta and u not in self._expunged}
            missing = [u for u, f in changes.items() if f is None]
            if missing:  # a change published without its flags: ask the store
                changes.update(await store.flags_of(self.folder_id, missing))
            for i, uid in enumerate(sorted(changes)):
                if i % UPDATE_SLICE == UPDATE_SLICE - 1:
                    await asyncio.sleep(0)
                flags = changes[uid]
                modseq = modseqs.get(uid, 0)
                if flags is None or (flags == self.meta[uid].flags and modseq <= self.meta[uid].modseq):
                    continue  # the client already knows (its own STORE or FETCH)
                self.set_flags(uid, flags, modseq)
                seq = self.seq_of(uid)
                if seq is not None:
                    out[:0] = self.learn_keywords([flags])
                    tail = b" MODSEQ (%d)" % self.meta[uid].modseq if self.condstore else b""
                    out.append(b"* %d FETCH (UID %d FLAGS %s%s)" % (seq, uid, self.flags_of(uid, flags), tail))
        if self._new:
            pending, self._new = self._new, {}
            last = self.uids[-1] if self.uids else 0
            fresh = {u: m for u, m in pending.items() if u > last and u not in self._expunged}
            if any(m is None for m in fresh.values()):  # a change without metadata: ask
                snap = await store.snapshot(self.owner.id, self.name, since_uid=last)
                fresh = {m.uid: m for m in snap.messages if m.uid not in self._expunged}
                self.uidnext = max(self.uidnext, snap.uidnext)
            for uid in sorted(fresh):
                m = fresh[uid]
                assert m is not None
                self.uids.append(uid)
                self.meta[uid] = m
                if self.searches:
                    self.touched.add(uid)
                self.uidnext = max(self.uidnext, uid + 1)
            if fresh:
                out[:0] = self.learn_keywords(m.flags for m in fresh.values() if m is not None)
                await self.claim_recent(store, sorted(fresh), max(fresh) + 1)
                out.append(b"* %d EXISTS" % self.exists)
                if self.show_recent:  # RFC 3501 §7.3.2
                    out.append(b"* %d RECENT" % len(self.recent))
        out += await contextsearch.refresh(self, store)  # RFC 5267 §4.3: ADDTO after EXISTS
        if not self.has_pending:  # a modseq is told only once all it covers is
            self.highestmodseq = max(self.highestmodseq, self._pending_modseq)
        return out
