"""\\Recent (RFC 3501 §2.3.2) with Dovecot's semantics: a message is recent in exactly
one session, the first to open its folder read-write (or to be told of it while the
folder is open) after it arrived. The store keeps, per folder, the lowest UID no session
has claimed yet (folders.first_recent_uid); a session claims every UID below a bound by
moving that mark up, in the writer, so two sessions never both get a message.

Claims are frequent (every session that sees a new message asks) and almost always
no-ops for all sessions but the first: the highest mark this process has written or
read is kept per folder, and a claim below it is answered without a write (the mark
only ever rises, so a cached value is never above the truth). The cache is keyed by
the folder's id and UIDVALIDITY: SQLite may give a deleted folder's id to the next
folder created, and with imap.processes another process may have deleted it, so a
mark remembered for the old folder must not answer for the new one (imaptest's `copy`
group over two processes: a re-created folder's copied messages were nobody's
\\Recent)."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select, update

from mailbox_store import imapreads
from mailbox_store.feed import Change
from mailbox_store.prepared import Prepared
from mailbox_store.models import Folder
from mailbox_store.repository import Repository

if TYPE_CHECKING:
    from mailbox_store.reader import Reader
    from mailbox_store.writer import Writer

# built once, run on the DBAPI cursor (issue 12 §3, prepared.py): every SELECT and every
# announced delivery claims
_MARK = Prepared(select(Folder.first_recent_uid).where(Folder.id == bindparam("fid")))
_MOVE_MARK = Prepared(update(Folder).where(Folder.id == bindparam("fid")).values(first_recent_uid=bindparam("below")))
_KNOWN_MARKS = 100_000  # folders whose mark this process remembers (bounded memory)
_UIDNEXT = Prepared(select(Folder.uidnext).where(Folder.id == bindparam("fid")))
_UIDVALIDITY = Prepared(select(Folder.uidvalidity).where(Folder.id == bindparam("fid")))


def uidvalidity_of(conn: Connection, folder_id: int) -> int | None:
    """In the caller's transaction: the folder's UIDVALIDITY, None when it is gone (an
    APPEND into the selected folder checks the view's, in its writer job, append.py)."""
    return _UIDVALIDITY.scalar(conn, {"fid": folder_id})


def claim_all(conn: Connection, folder_id: int) -> tuple[int, int]:
    """In the caller's transaction (an APPEND's, store.deliver_all's `after`): claim
    every UID of the folder no session has claimed yet, up to its UIDNEXT as this
    transaction sees it; returns (first, below): the caller's \\Recent UIDs are those
    >= first and < below. One writer job for the APPEND and its claim, not two."""
    first = _MARK.scalar(conn, {"fid": folder_id})
    below = _UIDNEXT.scalar(conn, {"fid": folder_id})
    if first is None or below is None:  # the folder is gone
        return 0, 0
    if first < below:
        _MOVE_MARK.execute(conn, {"fid": folder_id, "below": below})
    return first, below


class RecentOps(Repository):
    engine: Any
    reader: Reader  # (imapreads.py)
    writer: Writer

    def _marks(self) -> dict[int, tuple[int, int]]:
        # in the core: deleting a folder (folders.py) forgets its mark
        return self.core.recent_marks

    def _known(self, folder_id: int, uidvalidity: int) -> int:
        """The mark this process knows for that folder (0: none)."""
        known = self._marks().get(folder_id)
        return known[1] if known is not None and known[0] == uidvalidity else 0

    def _remember(self, folder_id: int, uidvalidity: int, mark: int) -> None:
        marks = self._marks()
        if len(marks) >= _KNOWN_MARKS and folder_id not in marks:
            marks.clear()  # forgetting only costs a write later, never a wrong answer
        marks[folder_id] = (uidvalidity, max(self._known(folder_id, uidvalidity), mark))

    def claimed(self, folder_id: int, below_uid: int, uidvalidity: int = 0) -> None:
        """A claim committed by a caller's own job (claim_all): later claims below it
        are answered without a write."""
        self._remember(folder_id, uidvalidity, below_uid)

    async def claim_recent(self, folder_id: int, below_uid: int, uidvalidity: int = 0) -> int:
        """Claim for the caller every UID below below_uid that no session has claimed;
        returns the first UID the caller got (those >= it and < below_uid are its
        \\Recent messages; it got none when the result is >= below_uid). uidvalidity:
        the folder's as the caller knows it (the cache's key with the id)."""
        if self._known(folder_id, uidvalidity) >= below_uid:
            return below_uid
        # sessions told of the same delivery claim together: the first claim's write
        # answers the others (they get none of its UIDs), one writer job instead of
        # one per session (10,000 IDLE sessions woken by one message, issue 12 §4)
        claims: dict[int, tuple[int, asyncio.Future[int]]] = self.__dict__.setdefault("_recent_claims", {})
        pending = claims.get(folder_id)
        if pending is not None and pending[0] >= below_uid:
            # that claim takes every UID this one could: this one gets none, at once (10,000
            # sessions awaiting it cost half the wake-up of a delivery, issue 12); should it
            # fail, its UIDs stay unclaimed for a later session, never given twice
            return below_uid
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        claims[folder_id] = (below_uid, done)
        try:
            first = await self._claim(folder_id, below_uid, uidvalidity)
            done.set_result(first)
            return first
        except asyncio.CancelledError:
            done.cancel()
            raise
        except Exception as e:
            done.set_exception(e)
            done.exception()  # retrieved here: the waiters ignore it
            raise
        finally:
            if claims.get(folder_id, (0, None))[1] is done:
                del claims[folder_id]

    async def _claim(self, folder_id: int, below_uid: int, uidvalidity: int) -> int:
        def job(conn: Connection) -> tuple[int, list[Change]]:
            first = _MARK.scalar(conn, {"fid": folder_id})
            if first is None:  # the folder is gone: nothing to claim
                return below_uid, []
            if first < below_uid:
                _MOVE_MARK.execute(conn, {"fid": folder_id, "below": below_uid})
            return first, []

        first = await self.writer.submit(job)
        self._remember(folder_id, uidvalidity, below_uid)
        return first

    async def recent_count(self, folder_id: int) -> int:
        """STATUS RECENT: the messages no session has claimed yet."""
        return await self.reader.run(lambda conn: imapreads.recent_count(conn, folder_id))
