"""The conversation memory of each patient's mailbox (DESIGN.md §4 "Professional
initiates", "Closing"): correspondents with their exchange open or closed, the ids of
messages marked `X-MSS-MES: FIN`, and the pharmacies allowed to receive a first message.

policy/conversation.py decides; this module only remembers. A professional message's
effects are written in its delivery's own transaction (store._Delivery), so the MX's
250 means the conversation change is committed too (DESIGN.md §4 "Durability").
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, insert, literal, select, union_all
from sqlalchemy.dialects import postgresql, sqlite

from mailbox_store.errors import StoreError
from mailbox_store.feed import Change
from mailbox_store.models import AuditEvent, ClosedMessage, Correspondent, Pharmacy
from mailbox_store.repository import Repository
from policy.conversation import ConversationEffects, Exchange, RecipientFacts, replies_to_closed_message

if TYPE_CHECKING:
    from mailbox_store.records import MailboxInfo
    from mailbox_store.reader import Reader
    from mailbox_store.writer import Writer


class PharmacyError(StoreError):
    pass


def _insert(conn: Connection, table: Any) -> Any:
    """INSERT with ON CONFLICT support on both dialects we run on."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def apply_effects(conn: Connection, items: Sequence[tuple[int, ConversationEffects, dt.datetime]]) -> None:
    """Record delivered professional messages' effects (inside the caller's transaction),
    in delivery order, two statements for a whole group: each message's correspondents
    open, or closed by [FIN] once it is delivered; its id kept when it is marked
    X-MSS-MES: FIN. Rows are applied in order, so a later message's state wins."""
    people = [{"mailbox_id": mid, "address": address,
               "state": (Exchange.CLOSED if e.close_exchange else Exchange.OPEN).value, "updated_at": when}
              for mid, e, when in items for address in e.correspondents]
    if people:
        conn.execute(_upserts(conn.dialect.name)[0], people)
    closed = [{"mailbox_id": mid, "message_id": e.closed_message} for mid, e, _ in items
              if e.closed_message is not None]
    if closed:
        conn.execute(_upserts(conn.dialect.name)[1], closed)


@functools.cache
def _upserts(dialect: str) -> tuple[Any, Any]:
    """apply_effects' two statements, built once per dialect: every delivery batch runs
    them, in the writer thread that holds the GIL the MX's event loop waits for."""
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Correspondent)
    people = stmt.on_conflict_do_update(index_elements=["mailbox_id", "address"],
                                        set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at})
    closed = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ClosedMessage).on_conflict_do_nothing()
    return people, closed


# Built once, with bound parameters: building the statement cost the event loop more
# than running it (py-spy under bench/web_load.py, at every webmail conversation view).
_FACTS_PARTS = (
    select(literal("state").label("k"), Correspondent.state.label("v")).where(
        Correspondent.mailbox_id == bindparam("mid"), Correspondent.address == bindparam("address")),
    select(literal("pharmacy"), Pharmacy.address).where(
        Pharmacy.mailbox_id == bindparam("mid"), Pharmacy.address == bindparam("address")))
_FACTS = union_all(*_FACTS_PARTS)
_FACTS_ANSWERED = union_all(*_FACTS_PARTS, select(literal("closed"), ClosedMessage.message_id).where(
    ClosedMessage.mailbox_id == bindparam("mid"), ClosedMessage.message_id.in_(bindparam("answered", expanding=True))))


class ConversationOps(Repository):
    engine: Any
    writer: "Writer"
    reader: "Reader"

    async def recipient_facts(self, mailbox_id: int, address: str, in_reply_to: Sequence[str] = (),
                              references: Sequence[str] = ()) -> RecipientFacts:
        """What policy.conversation needs to decide a patient's message to `address`
        (normalised), answering the given message ids."""
        answered = {*in_reply_to, *references}
        # one round trip (the webmail asks at every conversation view): tagged rows
        params = {"mid": mailbox_id, "address": address, "answered": sorted(answered)[:200]}
        q = _FACTS_ANSWERED if answered else _FACTS
        rows = await self.reader.run_light(lambda conn: conn.execute(q, params).all())
        state = next((r.v for r in rows if r.k == "state"), None)
        pharmacy = any(r.k == "pharmacy" for r in rows)
        closed = {r.v for r in rows if r.k == "closed"}
        return RecipientFacts(Exchange(state) if state else Exchange.NONE, pharmacy,
                              replies_to_closed_message(tuple(in_reply_to), tuple(references), closed))

    async def correspondents(self, mailbox_id: int) -> list[tuple[str, str]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(Correspondent.address, Correspondent.state)
                                       .where(Correspondent.mailbox_id == mailbox_id)
                                       .order_by(Correspondent.address))).all()
        return [(r.address, r.state) for r in rows]

    async def pharmacies(self, mailbox: "MailboxInfo") -> list[str]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(Pharmacy.address).where(Pharmacy.mailbox_id == mailbox.id)
                                            .order_by(Pharmacy.address))).scalars())

    async def allow_pharmacy(self, mailbox: "MailboxInfo", address: str, actor: str = "admin",
                             source: str = "cli") -> None:
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            # RETURNING, not rowcount: psycopg reports -1 for an INSERT (PostgreSQL store)
            added = conn.execute(_insert(conn, Pharmacy).values(mailbox_id=mailbox.id, address=address, created_at=when)
                                 .on_conflict_do_nothing().returning(Pharmacy.address)).first()
            if added is None:
                raise PharmacyError(f"{address} is already allowed for {mailbox.ins}")
            conn.execute(insert(AuditEvent).values(mailbox_id=mailbox.id, at=when, actor=actor, action="pharmacy.allow",
                                                   detail=address, source=source))
            return None, []

        await self.writer.submit(job)

    async def revoke_pharmacy(self, mailbox: "MailboxInfo", address: str, actor: str = "admin",
                              source: str = "cli") -> None:
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            n = conn.execute(delete(Pharmacy).where(Pharmacy.mailbox_id == mailbox.id,
                                                    Pharmacy.address == address)).rowcount
            if n != 1:
                raise PharmacyError(f"{address} is not an allowed pharmacy of {mailbox.ins}")
            conn.execute(insert(AuditEvent).values(mailbox_id=mailbox.id, at=when, actor=actor,
                                                   action="pharmacy.revoke", detail=address, source=source))
            return None, []

        await self.writer.submit(job)
