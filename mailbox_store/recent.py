"""\\Recent (RFC 3501 §2.3.2) with Dovecot's semantics: a message is recent in exactly
one session, the first to open its folder read-write (or to be told of it while the
folder is open) after it arrived. The store keeps, per folder, the lowest UID no session
has claimed yet (folders.first_recent_uid); a session claims every UID below a bound by
moving that mark up, in the writer, so two sessions never both get a message.

Claims are frequent (every session that sees a new message asks) and almost always
no-ops for all sessions but the first: the highest mark this process has written or
read is kept per folder, and a claim below it is answered without a write (the mark
only ever rises, so a cached value is never above the truth)."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from mailbox_store.feed import Change
from mailbox_store.models import Folder, Message
from mailbox_store.repository import Repository

if TYPE_CHECKING:
    from mailbox_store.writer import Writer

_KNOWN_MARKS = 100_000  # folders whose mark this process remembers (bounded memory)


class RecentOps(Repository):
    engine: Any
    writer: Writer

    def _marks(self) -> dict[int, int]:
        # in the core: deleting a folder (folders.py) forgets its mark
        return self.core.recent_marks

    def _remember(self, folder_id: int, mark: int) -> None:
        marks = self._marks()
        if len(marks) >= _KNOWN_MARKS and folder_id not in marks:
            marks.clear()  # forgetting only costs a write later, never a wrong answer
        marks[folder_id] = max(marks.get(folder_id, 0), mark)

    async def claim_recent(self, folder_id: int, below_uid: int) -> int:
        """Claim for the caller every UID below below_uid that no session has claimed;
        returns the first UID the caller got (those >= it and < below_uid are its
        \\Recent messages; it got none when the result is >= below_uid)."""
        if self._marks().get(folder_id, 0) >= below_uid:
            return below_uid
        # sessions told of the same delivery claim together: the first claim's write
        # answers the others (they get none of its UIDs), one writer job instead of
        # one per session (10,000 IDLE sessions woken by one message, issue 12 §4)
        claims: dict[int, tuple[int, asyncio.Future[int]]] = self.__dict__.setdefault("_recent_claims", {})
        pending = claims.get(folder_id)
        if pending is not None and pending[0] >= below_uid:
            try:
                await asyncio.shield(pending[1])
            except Exception:
                pass  # its failure is its caller's; this claim simply got nothing
            return below_uid
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        claims[folder_id] = (below_uid, done)
        try:
            first = await self._claim(folder_id, below_uid)
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

    async def _claim(self, folder_id: int, below_uid: int) -> int:
        def job(conn: Connection) -> tuple[int, list[Change]]:
            first = conn.execute(select(Folder.first_recent_uid).where(Folder.id == folder_id)).scalar()
            if first is None:  # the folder is gone: nothing to claim
                return below_uid, []
            if first < below_uid:
                conn.execute(update(Folder).where(Folder.id == folder_id).values(first_recent_uid=below_uid))
            return first, []

        first = await self.writer.submit(job)
        self._remember(folder_id, below_uid)
        return first

    async def recent_count(self, folder_id: int) -> int:
        """STATUS RECENT: the messages no session has claimed yet."""
        async with self.engine.connect() as conn:
            first = (await conn.execute(select(Folder.first_recent_uid).where(Folder.id == folder_id))).scalar()
            if first is None:
                return 0
            return (await conn.execute(select(func.count(Message.id)).where(
                Message.folder_id == folder_id, Message.uid >= first))).scalar() or 0
