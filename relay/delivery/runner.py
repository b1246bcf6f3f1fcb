"""The outbound queue runner (Postfix's qmgr + smtp in one asyncio task).

Implementation notes:
- The queue in the store is the only truth (mailbox_store/outbound.py). The runner
  keeps in memory only what is in flight, so a restart simply starts over from the
  rows: an entry is removed only after its server's 2xx (or its DSN) is committed.
- An attempt is settled (removed, deferred or bounced, committed through the store's
  writer) at the server's final reply to DATA, before QUIT (client.py): a kill during
  QUIT does not send the message twice. The settle goes through the same writer and
  the same transactions as before, only earlier; QUIT's fate is not recorded.
- Limits: `concurrency` attempts at once, `per_destination` per domain.
- Retries follow `delivery.backoff`; a 5xx, a permanent routing error or the end of
  the lifetime bounces: an RFC 3464 DSN in the sender's INBOX (for a patient's mail;
  our own automatic messages are not bounced to anyone, RFC 3834 §3.2).
- Woken by the feed ("queue.new" after each commit), else every `POLL` seconds.
- Several nodes share one queue on PostgreSQL: entries are claimed under a lease
  (mailbox_store/queue_claim.py), renewed every third of `delivery.lease` while in flight; a
  killed node's entries go to the others when its leases run out. `concurrency` and
  `per_destination` are per node: N nodes open up to N x `per_destination`
  connections to one domain (a database-wide count would cost a round trip per attempt).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ssl
from collections import Counter as Tally
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter, Gauge

from certs.tls import client_context
from mailbox_store.feed import Change
from mailbox_store.outbound import NoSuchEntry, QueueItem
from relay.delivery.client import Outcome, attempt
from relay.delivery.reports import FailedRecipient, build_dsn, original_headers_of
from relay.delivery.routing import Hop, RouteError, route

if TYPE_CHECKING:
    from relay.core.runtime import Runtime

log = structlog.get_logger("relay.delivery")

DELIVERIES = Counter("mssante_delivery_attempts_total", "Outbound delivery attempts by result",
                     ["result", "kind"])
QUEUE_DEPTH = Gauge("mssante_queue_depth", "Entries (message x recipient) in the outbound queue")
QUEUE_OLDEST = Gauge("mssante_queue_oldest_age_seconds", "Age of the oldest entry of the outbound queue")
POLL = 30.0
BOUNCED_KINDS = ("reply", "mdn")  # sent for a patient: the patient learns of a failure


class QueueRunner:
    def __init__(self, runtime: "Runtime"):
        self.rt = runtime
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._per_domain: Tally[str] = Tally()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._tls: ssl.SSLContext | None = None
        self.lease = dt.timedelta(seconds=runtime.config.delivery.lease if runtime.config.delivery else 60)
        self._renewed = 0.0  # loop time of the last lease renewal

    def tls(self) -> ssl.SSLContext:
        """Our client certificate, the peer checked against the trust anchors (reloaded
        with the certificates on SIGHUP: `reset_tls`)."""
        if self._tls is None:
            cfg = self.rt.config
            assert cfg.delivery is not None
            self._tls = client_context(cfg.trust_anchors, cfg.delivery.client_cert, cfg.delivery.client_key,
                                       cfg.tls_profile, cfg.crls)
        return self._tls

    def reset_tls(self) -> None:
        self._tls = None

    def _on_change(self, change: Change) -> None:
        if change.kind == "queue.new":
            self._wake.set()

    def start(self) -> None:
        self.rt.store.feed.listen(self._on_change)
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self, grace: float) -> None:
        """Stop taking entries; attempts in flight get `grace` seconds, then are
        cancelled (their entries stay queued: nothing is lost)."""
        self._stopping = True
        self.rt.store.feed.unlisten(self._on_change)
        self._wake.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=grace)
        pending = list(self._inflight.values())
        if pending:
            await asyncio.wait(pending, timeout=grace)
            for t in pending:
                t.cancel()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._renew()
                pause = await self._dispatch()
            except Exception as e:  # the store may be briefly unavailable: try again later
                log.error("queue.dispatch_failed", error=type(e).__name__)
                pause = POLL
            if self._inflight:  # wake in time to renew the leases of the attempts in flight
                pause = min(pause, self.lease.total_seconds() / 3)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=pause)
            except asyncio.TimeoutError:
                pass

    async def _dispatch(self) -> float:
        """Start the due attempts the limits allow; returns how long to sleep before the
        next entry falls due (a commit or a finished attempt wakes us earlier)."""
        cfg = self.rt.config.delivery
        assert cfg is not None
        now = dt.datetime.now(dt.timezone.utc)
        depth, oldest, next_due = await self.rt.store.queue_stats()
        QUEUE_DEPTH.set(depth)
        QUEUE_OLDEST.set((now - oldest).total_seconds() if oldest else 0)
        for item in await self.rt.store.queue_claim(self.lease, cfg.concurrency - len(self._inflight),
                                                    cfg.per_destination, dict(self._per_domain),
                                                    exclude_ids=list(self._inflight), now=now):
            self._per_domain[item.domain] += 1
            task = asyncio.ensure_future(self._attempt(item))
            self._inflight[item.id] = task
            task.add_done_callback(functools.partial(self._done, item))
        if next_due is None or next_due <= now:
            return POLL  # nothing queued, or due entries waiting for a slot (a finished attempt wakes us)
        return min(POLL, max(0.05, (next_due - now).total_seconds()))

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        if self._inflight and loop.time() - self._renewed >= self.lease.total_seconds() / 3:
            self._renewed = loop.time()
            await self.rt.store.queue_renew(list(self._inflight), self.lease)

    def _done(self, item: QueueItem, _task: "asyncio.Task[None]") -> None:
        self._inflight.pop(item.id, None)
        self._per_domain[item.domain] -= 1
        if self._per_domain[item.domain] <= 0:
            del self._per_domain[item.domain]
        self._wake.set()  # a slot is free: look again

    def _delay(self, attempts: int) -> float:
        cfg = self.rt.config.delivery
        assert cfg is not None
        return cfg.backoff[min(attempts, len(cfg.backoff) - 1)]

    async def _attempt(self, item: QueueItem) -> None:
        cfg = self.rt.config
        assert cfg.delivery is not None
        settled = False

        async def settle(outcome: Outcome) -> None:
            # called by the client at the server's final reply, before QUIT (client.py)
            nonlocal settled
            settled = True
            await self._settle_logged(item, outcome)

        try:
            content = await self.rt.store.queue_content(item)
            if item.route == "smarthost":
                if cfg.notify_smarthost is None:
                    await self.rt.store.queue_remove(item.id)  # notifications were turned off
                    return
                hops = [Hop(cfg.notify_smarthost.host, cfg.notify_smarthost.port, cfg.notify_smarthost.host)]
                tls = None
            else:
                hops = await route(item.domain, cfg.delivery.transport)
                tls = self.tls()
            outcome = await attempt(hops, item.mail_from, item.rcpt, content, tls, cfg.hostname,
                                    cfg.delivery.timeout, settle=settle)
        except RouteError as e:
            outcome = Outcome(550 if e.permanent else 0, str(e), None)
        except NoSuchEntry:
            return  # deleted meanwhile (`queue delete`)
        except Exception as e:
            log.error("delivery.attempt_failed", queue_id=item.id, error=type(e).__name__)
            outcome = Outcome(0, f"internal error: {type(e).__name__}", None)
        if not settled:  # no server gave a final answer (no route, unreachable, TLS)
            await self._settle_logged(item, outcome)

    async def _settle_logged(self, item: QueueItem, outcome: Outcome) -> None:
        """Settle once; never raises (a failure is logged, and the lease keeps the entry
        from being retried before its time). Shielded: `stop` cancelling the attempt
        does not cut a commit that is under way."""
        try:
            await asyncio.shield(self._settle(item, outcome))
        except asyncio.CancelledError:
            raise
        except NoSuchEntry:
            pass  # deleted by the operator during the attempt
        except Exception as e:
            log.error("delivery.settle_failed", queue_id=item.id, error=type(e).__name__)

    async def _settle(self, item: QueueItem, outcome: Outcome) -> None:
        if outcome.delivered:
            await self.rt.store.queue_remove(item.id)
            DELIVERIES.labels("sent", item.kind).inc()
            log.info("delivery.sent", queue_id=item.id, kind=item.kind, domain=item.domain, attempts=item.attempts + 1,
                     remote=outcome.remote_mta)
        elif outcome.permanent:
            await self._bounce(item, outcome)
        elif dt.datetime.now(dt.timezone.utc) >= item.expires_at:
            # tried until the end of its lifetime (RFC 5321 §4.5.4.1): it bounces
            await self._bounce(item, Outcome(outcome.code, f"delivery time expired after {item.attempts + 1} "
                                             f"attempt(s): {outcome.text}", outcome.remote_mta), status="4.4.7")
        else:
            delay = self._delay(item.attempts)
            when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=delay)
            error = f"{outcome.code} {outcome.text}" if outcome.code else outcome.text
            if not await self.rt.store.queue_release(item.id, error, when):
                log.warning("delivery.lease_lost", queue_id=item.id)  # another node took it over
                return
            DELIVERIES.labels("deferred", item.kind).inc()
            log.info("delivery.deferred", queue_id=item.id, kind=item.kind, domain=item.domain,
                     attempts=item.attempts + 1, code=outcome.code, retry_in=delay)

    async def _bounce(self, item: QueueItem, outcome: Outcome, status: str | None = None) -> None:
        """A final failure: the DSN first (stored durably), then the entry removed."""
        DELIVERIES.labels("bounced", item.kind).inc()
        status = status or _enhanced(outcome) or "5.0.0"
        log.info("delivery.bounced", queue_id=item.id, kind=item.kind, domain=item.domain, code=outcome.code,
                 status=status)
        if item.kind in BOUNCED_KINDS and item.mail_from:
            mailbox = await self.rt.store.get_mailbox(item.ins)
            if mailbox is not None:
                cfg = self.rt.config
                content = await self.rt.store.queue_content(item)
                # the reply as the server gave it: build_dsn() names its type (RFC 3464 §2.3.6)
                diagnostic = f"{outcome.code} {outcome.text}" if outcome.code else outcome.text
                dsn = build_dsn(
                    reporting_mta=cfg.hostname, postmaster=f"postmaster@{cfg.domain}", to=item.mail_from,
                    original_envelope_id=item.envelope_id, arrival_date=item.created_at,
                    recipients=[FailedRecipient(item.rcpt, status, diagnostic, outcome.remote_mta,
                                                dt.datetime.now(dt.timezone.utc))],
                    original_headers=original_headers_of(content))
                await self.rt.store.deliver([mailbox], dsn)
        await self.rt.store.queue_remove(item.id)


def _enhanced(outcome: Outcome) -> str | None:
    """The RFC 3463 code at the start of the reply text, when the server gave one."""
    first = outcome.text.split(" ", 1)[0] if outcome.text else ""
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and parts[0] in ("4", "5"):
        return first
    return None
