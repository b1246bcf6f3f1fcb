"""Claiming the outbound queue under a lease, so several nodes share one queue
(issue 14 §2, DESIGN.md §5).

Implementation notes:
- An entry is taken by one node at a time: `queue_claim` selects due entries whose lease
  is free or expired, `FOR UPDATE OF outbound SKIP LOCKED` on PostgreSQL (two nodes
  claiming at once each get different rows, neither waits), and stamps them with this
  node's id and `lease_until` in the same transaction. On SQLite the writer already
  holds the database lock (BEGIN IMMEDIATE): a plain claim is atomic, and one daemon
  per file stays the rule (relay/daemon/storelock.py).
- A live node renews the leases of its attempts in flight (`queue_renew`, the runner
  every third of a lease): a slow attempt never loses its entry to another node. A node
  killed mid-attempt stops renewing: its entries are claimable by the others once
  `lease_until` passes.
- Settling ends the lease in the same statement that records the outcome: delivered is
  a DELETE (outbound.py `queue_remove`: unconditional, a remote 250 is a fact even if
  our lease ran out), a deferral is `queue_release` (attempts, error, next time, lease
  cleared) and only when we still hold the lease, so a node whose lease was taken over
  never overwrites the new holder's state.
- What remains (RFC 5321 §6.1 prefers a duplicate to a loss): between the receiving
  MTA's 250 and our DELETE's commit, a crash of this node (or of the database) leaves
  the entry leased; after the lease another node sends it again. The window is one
  commit (milliseconds), the settle runs at the final reply to DATA, before QUIT
  (relay/delivery/client.py). Closing it would need the receiving MTA's help (no SMTP
  extension offers idempotent delivery).
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection, or_, select, update

from mailbox_store.feed import Change
from mailbox_store.models import Mailbox, OutboundEntry
from mailbox_store.outbound import _COLUMNS, QueueItem, _item
from mailbox_store.repository import Repository

if TYPE_CHECKING:
    from mailbox_store.writer import Writer


def new_node_id() -> str:
    """Names this process in the leases it holds: host, PID and a random part (a PID is
    reused after a restart; the random part keeps an old lease from looking ours)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim(conn: Connection, node: str, now: dt.datetime, lease: dt.timedelta, slots: int,
          per_domain: int | None = None, busy: Mapping[str, int] | None = None,
          exclude_ids: Sequence[str] = ()) -> list[QueueItem]:
    """Take up to `slots` due entries for `node` until `now + lease`, at most
    `per_domain` per domain counting the `busy` attempts this node already has there."""
    if slots <= 0:
        return []
    q = (select(*_COLUMNS).join(Mailbox, Mailbox.id == OutboundEntry.mailbox_id)
         .where(OutboundEntry.next_attempt_at <= now,
                or_(OutboundEntry.lease_until.is_(None), OutboundEntry.lease_until <= now))
         .order_by(OutboundEntry.next_attempt_at, OutboundEntry.id)
         # more candidates than slots: some may belong to a domain already at its limit
         .limit(slots * 8)
         .with_for_update(skip_locked=True, of=OutboundEntry))
    if exclude_ids:
        q = q.where(OutboundEntry.id.not_in(list(exclude_ids)))
    taken: list[QueueItem] = []
    held: Counter[str] = Counter(busy or {})
    for row in conn.execute(q):
        item = _item(row)
        if per_domain is not None and held[item.domain] >= per_domain:
            continue
        held[item.domain] += 1
        taken.append(item)
        if len(taken) >= slots:
            break
    if taken:
        conn.execute(update(OutboundEntry).where(OutboundEntry.id.in_([i.id for i in taken]))
                     .values(lease_owner=node, lease_until=now + lease))
    return taken


class ClaimOps(Repository):
    """The Store's side of the lease (the node's id is the core's, core.py)."""

    writer: "Writer"

    async def queue_claim(self, lease: dt.timedelta, slots: int, per_domain: int | None = None,
                          busy: Mapping[str, int] | None = None, exclude_ids: Sequence[str] = (),
                          now: dt.datetime | None = None) -> list[QueueItem]:
        when = now or dt.datetime.now(dt.timezone.utc)
        node = self.node_id

        def job(conn: Connection) -> tuple[list[QueueItem], list[Change]]:
            return claim(conn, node, when, lease, slots, per_domain, busy, exclude_ids), []

        return await self.writer.submit(job)

    async def queue_renew(self, entry_ids: Sequence[str], lease: dt.timedelta) -> int:
        """Extend this node's leases on `entry_ids`; returns how many it still held."""
        if not entry_ids:
            return 0
        node, until = self.node_id, dt.datetime.now(dt.timezone.utc) + lease

        def job(conn: Connection) -> tuple[int, list[Change]]:
            return conn.execute(update(OutboundEntry).where(OutboundEntry.id.in_(list(entry_ids)),
                                                            OutboundEntry.lease_owner == node)
                                .values(lease_until=until)).rowcount, []

        return await self.writer.submit(job)

    async def queue_release(self, entry_id: str, error: str, next_attempt_at: dt.datetime) -> bool:
        """A failed attempt: count it, keep its error, due again at `next_attempt_at`, and
        end our lease, in one statement. False when the lease is no longer ours (it
        expired and another node took the entry, or the entry is gone): nothing changed."""
        node = self.node_id

        def job(conn: Connection) -> tuple[bool, list[Change]]:
            n = conn.execute(update(OutboundEntry).where(OutboundEntry.id == entry_id,
                                                         OutboundEntry.lease_owner == node).values(
                attempts=OutboundEntry.attempts + 1, last_error=error[:1024], next_attempt_at=next_attempt_at,
                lease_owner=None, lease_until=None)).rowcount
            return n == 1, []

        return await self.writer.submit(job)
