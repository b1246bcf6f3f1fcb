"""The MX of patient.mssante.fr: aiosmtpd's protocol engine with our handler.

Implementation notes:
- aiosmtpd knows SMTP; `MxHandler` knows the business and asks `policy` for every
  decision (STYLE.md). The order of checks is DESIGN.md §4's: STARTTLS, client
  certificate, trust list at MAIL; domain, INS, unknown, state at RCPT.
- STARTTLS: aiosmtpd >= 1.4.6 discards plaintext pipelined after STARTTLS
  (RFC 3207 §4.2; CVE-2024-34083); tests/integration check that it stays so.
- SMTP smuggling: DATA ends only at <CRLF>.<CRLF> (data.py); we additionally refuse
  any bare CR or LF in the content (RFC 5321 §2.3.8) with 500 5.5.2, so a message that
  another MTA would split differently is never stored or passed on.
- Nothing a client sends reaches our trace headers unchecked: HELO must be a domain or
  an address literal, the recipient is written in its normalised form, the
  certificate subject is quoted with escapes (trace.py).
- Attachments (DESIGN.md §4): every part is checked by its real content before
  anything is stored (554 5.6.1 / 552 5.3.4 name the part); the documents each
  patient's dossier receives are filed in the delivery's own transaction.
- 250 after DATA means: stored durably in every accepted mailbox, documents included
  (one transaction). The commit is shielded: a session cut while waiting for it does
  not cancel it. A store that cannot write answers 452 4.3.1 when space is the cause
  (and at MAIL already when free space is under store.min_free_bytes), else 451 4.3.0.
"""
from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from typing import TYPE_CHECKING, Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax
from prometheus_client import Counter, Gauge, Histogram

from certs.dkim import DkimResult, auth_results
from certs.dkim import verify as verify_dkim
from certs.tls import peer_subject
from dossier_bridge.dossier import shifted
from mailbox_store.outbound import PreparedOutgoing
from mailbox_store.store import Delivered, MailboxInfo
from policy.addresses import TEST_LOCAL_PART, AddressKind, split_address, valid_helo
from policy.conversation import thread_root
from policy.decisions import (BAD_HELO, BARE_LINE_ENDING, CLIENT_CERT_REQUIRED, SHUTTING_DOWN,
                              STARTTLS_REQUIRED, STORE_FULL, STORE_UNAVAILABLE, TLS_ALREADY_ACTIVE,
                              TOO_MANY_CONNECTIONS, TOO_MANY_RECIPIENTS, Decision)
from policy.recipients import classify_recipient, mailbox_decision
from policy.trust import check_sender
from relay.inbound.pipeline import InboundRequest, decide
from relay.core.pools import run_in
from relay.core.runtime import POSTMASTER
from relay.smtp.autotest import AutoTest
from relay.smtp.engine import RelaySMTP
from relay.core.storefaults import store_failure
from relay.core.storefaults import free_space
from relay.smtp.trace import Channel, has_bare_line_ending, strip_own_auth_results, trace_headers

if TYPE_CHECKING:
    from relay.core.runtime import Runtime

log = structlog.get_logger("relay.mx")

MESSAGES = Counter("mssante_mx_messages_total", "Messages accepted or refused by the MX",
                   ["result", "code", "rule"])
STORE_SECONDS = Histogram("mssante_mx_store_seconds", "From the end of DATA to the durable commit",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SESSIONS = Gauge("mssante_mx_sessions", "Open SMTP sessions on the MX")
NULL_SENDER = "<>"


class MxSMTP(RelaySMTP):
    """aiosmtpd's engine, tightened: enhanced status codes on its stock replies, HELO
    checked, the null sender accepted, chunked DATA (engine.py), a cap on sessions per
    address."""

    def __init__(self, *args: Any, runtime: "Runtime", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self._in_ehlo = False
        self._counted_ip: str | None = None

    def connection_made(self, transport: Any) -> None:
        first = self._original_transport is None and self.transport is None
        super().connection_made(transport)
        if not first:
            return  # the TLS layer after STARTTLS: same session
        ip = (transport.get_extra_info("peername") or ("?",))[0]
        rt = self.runtime
        if not rt.sessions_per_ip.acquire(ip, rt.config.max_sessions_per_ip):
            log.info("session.refused", code=TOO_MANY_CONNECTIONS.code, rule=TOO_MANY_CONNECTIONS.rule, peer=ip)
            if self._handler_coroutine is not None:
                self._handler_coroutine.cancel()  # no 220 greeting
            transport.write((TOO_MANY_CONNECTIONS.smtp() + "\r\n").encode("ascii"))
            transport.close()
            return
        self._counted_ip = ip
        rt.sessions.add(self)
        SESSIONS.inc()

    def connection_lost(self, error: Exception | None) -> None:
        rt = self.runtime
        if self._counted_ip is not None:
            rt.sessions_per_ip.release(self._counted_ip)
            self._counted_ip = None
            SESSIONS.dec()
        rt.sessions.discard(self)
        super().connection_lost(error)

    async def smtp_HELO(self, arg: str) -> None:
        if arg and not valid_helo(arg):
            await self.push(BAD_HELO.smtp())
            return
        await super().smtp_HELO(arg)

    async def smtp_EHLO(self, arg: str) -> None:
        if arg and not valid_helo(arg):
            await self.push(BAD_HELO.smtp())
            return
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(arg)
        finally:
            self._in_ehlo = False

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None:  # RFC 3207 §4.2: no second negotiation
            await self.push(TLS_ALREADY_ACTIVE.smtp())
            return
        await super().smtp_STARTTLS(arg)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd reads "<>" as no address and answers 501; the null reverse-path is
        # what bounces and DSNs use (RFC 5321 §4.5.5) and must be accepted.
        stripped = arg.lstrip()
        if stripped.startswith("<>"):
            return NULL_SENDER, stripped[2:].strip()
        return super()._getaddr(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        # No AUTH on the MX: professionals are identified by their certificate.
        await self.push("502 5.5.1 AUTH non propose sur le MX / AUTH not offered on the MX")


class MxHandler:
    def __init__(self, runtime: "Runtime"):
        self.rt = runtime
        self.autotest = AutoTest(runtime)

    def refuse(self, d: Decision, stage: str, session: Session | None, **kw: Any) -> str:
        peer = session.peer[0] if session is not None and session.peer else None
        log.info("message.refused", code=d.code, status=d.status, rule=d.rule, reason=d.en, stage=stage,
                 peer=peer, **kw)
        MESSAGES.labels("refused", str(d.code), d.rule).inc()
        return d.smtp()

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        # RFC 2920 PIPELINING and RFC 2034 ENHANCEDSTATUSCODES; aiosmtpd already lists
        # SIZE, 8BITMIME, SMTPUTF8 and STARTTLS (before TLS only).
        kept = [r for r in responses[1:] if not r[4:].upper().startswith("AUTH")]
        return responses[:1] + ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"] + kept

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.rt.stopping:
            return self.refuse(SHUTTING_DOWN, "mail", session)
        if free_space(self.rt.config).low:  # RFC 3463 X.3.1: known before the data is sent
            return self.refuse(STORE_FULL, "mail", session)
        if not session.ssl:
            return self.refuse(STARTTLS_REQUIRED, "mail", session)
        subject = getattr(session, "cert_subject", None)
        if subject is None:
            ssl_object: ssl.SSLObject = session.ssl["ssl_object"]
            subject = session.cert_subject = peer_subject(ssl_object)  # type: ignore[attr-defined]
        if subject is None:
            return self.refuse(CLIENT_CERT_REQUIRED, "mail", session)
        if address == NULL_SENDER:
            domain = None  # null reverse-path: a bounce (RFC 5321 §4.5.5)
        else:
            parsed = split_address(address)
            if parsed is None:
                return "501 5.1.7 Adresse expediteur invalide / Bad sender address syntax"
            domain = parsed.domain
        refusal = check_sender(self.rt.trust.trust, domain, subject)
        if refusal is not None:
            return self.refuse(refusal, "mail", session, sender_domain=domain)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        session.sender_domain = domain  # type: ignore[attr-defined]
        envelope.mailboxes = []  # type: ignore[attr-defined]
        envelope.test_rcpt = False  # type: ignore[attr-defined]
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.rt.config.max_recipients:
            return self.refuse(TOO_MANY_RECIPIENTS, "rcpt", session)
        c = classify_recipient(address, self.rt.config.domain)
        if isinstance(c, Decision):
            return self.refuse(c, "rcpt", session)
        if c.kind is AddressKind.TEST:
            # DESIGN.md §4 "TEST address": accepted, answered after DATA (autotest.py)
            envelope.test_rcpt = True  # type: ignore[attr-defined]
            if not any(r.partition("@")[0] == TEST_LOCAL_PART for r in envelope.rcpt_tos):
                envelope.rcpt_tos.append(f"{TEST_LOCAL_PART}@{self.rt.config.domain}")
            return "250 2.1.5 OK"
        key = POSTMASTER if c.kind is AddressKind.POSTMASTER else str(c.ins)
        ins_hash = self.rt.master.pseudonym(key)
        try:
            mbox = await self.rt.store.cached_mailbox(key)
        except Exception as e:
            log.error("store.read_failed", error=type(e).__name__)
            return self.refuse(STORE_UNAVAILABLE, "rcpt", session, ins_hash=ins_hash)
        refusal = mailbox_decision(mbox.state if mbox else None)
        if refusal is not None:
            return self.refuse(refusal, "rcpt", session, ins_hash=ins_hash)
        assert mbox is not None
        if any(m.id == mbox.id for m in envelope.mailboxes):  # type: ignore[attr-defined]
            return "250 2.1.5 OK (doublon / duplicate recipient)"
        # the normalised address, never the client's bytes, goes on (trace headers)
        envelope.rcpt_tos.append(f"{key}@{self.rt.config.domain}")
        envelope.rcpt_options.extend(rcpt_options)
        envelope.mailboxes.append(mbox)  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def _dkim(self, raw: bytes) -> list[DkimResult]:
        """RFC 6376 verification of the message as the sender sent it (DNS lookups and
        RSA: in a thread); unsigned mail costs nothing."""
        end = raw.find(b"\r\n\r\n")
        if b"dkim-signature:" not in raw[:end if end >= 0 else len(raw)].lower():
            return [DkimResult("none", None, None, None, "no signature")]
        return await run_in(self.rt.pools and self.rt.pools.dkim, verify_dkim, raw, self.rt.dkim_resolver)

    @staticmethod
    def _channel(session: Session) -> Channel:
        assert session.ssl is not None  # MAIL was refused without TLS
        ssl_object: ssl.SSLObject = session.ssl["ssl_object"]
        return Channel(helo=session.host_name or "unknown",
                       peer_ip=session.peer[0] if session.peer else "",
                       tls_version=ssl_object.version() or "unknown",
                       tls_cipher=(ssl_object.cipher() or ("unknown",))[0],
                       cert_subject=session.cert_subject,  # type: ignore[attr-defined]
                       sender_domain=session.sender_domain)  # type: ignore[attr-defined]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        mailboxes: list[MailboxInfo] = envelope.mailboxes  # type: ignore[attr-defined]
        hashes = [self.rt.master.pseudonym(m.ins) for m in mailboxes]
        if has_bare_line_ending(raw):
            return self.refuse(BARE_LINE_ENDING, "data", session, ins_hash=hashes)
        channel = self._channel(session)
        # one parse, the policy decisions in order, off the event loop (relay/inbound), in
        # the parse pool (relay/core/pools.py; a lost worker process: 451): a bounce (null
        # sender) carries the patient's own message back, nothing to file
        patients = tuple(m for m in mailboxes if m.ins != POSTMASTER)
        request = InboundRequest(raw, patients, self.rt.config.attachments, channel.cert_subject,
                                 envelope.mail_from == NULL_SENDER, self.rt.trust.trust, self.rt.config.domain,
                                 envelope.test_rcpt)  # type: ignore[attr-defined]
        if self.rt.pools is not None:
            decided = await self.rt.pools.inspect(len(raw), decide, request)
        else:
            decided = await asyncio.to_thread(decide, request)
        if isinstance(decided, Decision):
            return self.refuse(decided, "data", session, ins_hash=hashes)
        filing = decided.filing
        queue_id = uuid.uuid4().hex[:16]
        ack: PreparedOutgoing | None = None
        if envelope.test_rcpt:  # type: ignore[attr-defined]
            # prepared only: written in the message's own transaction below (or alone
            # when the test address is the only recipient), never before it
            try:
                ack = await self.autotest.prepare(envelope.mail_from or "", decided.parsed, queue_id)
            except Exception as e:  # the test message is still accepted; the reply is best effort
                log.error("autotest.failed", queue_id=queue_id, error=type(e).__name__)
            if not mailboxes:
                if ack is not None:
                    try:
                        await asyncio.shield(self.rt.store.commit_outgoing(ack))
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:
                        log.error("store.deliver_failed", error=type(e).__name__, queue_id=queue_id)
                        refusal = store_failure(e, self.rt.config) or STORE_UNAVAILABLE
                        return self.refuse(refusal, "data", session, queue_id=queue_id)
                    self.autotest.committed(ack, queue_id)
                return f"250 2.0.0 OK: message de test recu / test message received as {queue_id}"
        single = envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None
        dkim = auth_results(await self._dkim(raw))
        # sealed as two parts, never joined: at most two copies of the message (issue 15 §2)
        prefix = trace_headers(channel, self.rt.config.hostname, queue_id, single, more_results=dkim)
        stripped = strip_own_auth_results(raw, self.rt.config.hostname)
        # the documents' byte ranges were read in `raw`: the stored copy moves every body
        # offset by the same amount (trace headers in front, our own results out)
        filing = shifted(filing, len(prefix) + len(stripped) - len(raw))
        raw = stripped

        def logged(fut: "asyncio.Future[list[Delivered]]") -> None:
            if fut.cancelled() or fut.exception() is not None:
                error = "cancelled" if fut.cancelled() else type(fut.exception()).__name__
                log.error("store.deliver_failed", error=error, queue_id=queue_id)
            else:
                STORE_SECONDS.observe(time.monotonic() - started)
                MESSAGES.labels("accepted", "250", "ok").inc()
                log.info("message.accepted", queue_id=queue_id, size=len(prefix) + len(raw), recipients=len(mailboxes),
                         ins_hash=hashes, sender_domain=channel.sender_domain, tls=channel.tls_version,
                         documents=sum(len(d) for _, d in filing.documents), not_filed=len(filing.not_filed))

        started = time.monotonic()
        # its thread root from the headers parsed once (decide() computed it already for
        # a professional's message), not parsed again in the store
        pro = decided.parsed.professional
        root = (decided.conversation.thread if decided.conversation is not None
                else thread_root(pro.message_id, pro.in_reply_to, pro.references))
        delivery = asyncio.ensure_future(self.rt.store.deliver(
            mailboxes, raw, prefix=prefix, documents=filing.documents, filed_by="mx", source=channel.peer_ip,
            not_filed=filing.not_filed, conversation=decided.conversation, receipt=decided.receipt,
            outgoing=(ack,) if ack is not None else (), thread_root=root))
        delivery.add_done_callback(logged)
        try:
            await asyncio.shield(delivery)
        except asyncio.CancelledError:
            raise  # the session is gone; the commit goes on and is logged
        except Exception as e:  # logged by `logged`; the answer says whether space is the cause
            refusal = store_failure(e, self.rt.config) or STORE_UNAVAILABLE
            return self.refuse(refusal, "data", session, ins_hash=hashes, queue_id=queue_id)
        if ack is not None:
            self.autotest.committed(ack, queue_id)
        return f"250 2.0.0 OK: stocke / stored as {queue_id}"
