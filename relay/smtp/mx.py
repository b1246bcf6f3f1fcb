"""The MX of patient.mssante.fr: aiosmtpd's protocol engine with our handler.

Implementation notes:
- aiosmtpd knows SMTP; `MxHandler` knows the business and asks `policy` for every
  decision (STYLE.md). The order of checks is DESIGN.md §4's: STARTTLS, client
  certificate, trust list at MAIL; domain, INS, unknown, state at RCPT.
- STARTTLS: aiosmtpd >= 1.4.6 discards plaintext pipelined after STARTTLS
  (RFC 3207 §4.2; CVE-2024-34083); tests/integration check that it stays so.
- SMTP smuggling: aiosmtpd ends DATA only at <CRLF>.<CRLF>; we additionally refuse any
  bare CR or LF in the content (RFC 5321 §2.3.8) with 500 5.5.2, so a message that
  another MTA would split differently is never stored or passed on.
- 250 after DATA means: stored durably in every accepted mailbox (one transaction).
"""
from __future__ import annotations

import datetime as dt
import ssl
import uuid
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

from certs.tls import peer_subject
from policy.addresses import AddressKind, split_address
from policy.decisions import (BARE_LINE_ENDING, CLIENT_CERT_REQUIRED, MESSAGE_TOO_BIG, STARTTLS_REQUIRED,
                              STORE_UNAVAILABLE, TOO_MANY_RECIPIENTS, UNKNOWN_MAILBOX, Decision)
from policy.recipients import classify_recipient, mailbox_decision
from policy.trust import check_sender
from relay.smtp.data import TooBig, read_dot_data
from relay.smtp.replies import with_enhanced_code

if TYPE_CHECKING:
    from relay.runtime import Runtime

log = structlog.get_logger("relay.mx")
NULL_SENDER = "<>"


def has_bare_line_ending(data: bytes) -> bool:
    """True when a CR or LF is not part of a CRLF pair (RFC 5321 §2.3.8).
    Three C-speed counts instead of a regex scan: 6% of the MX's CPU at 10 KB."""
    pairs = data.count(b"\r\n")
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs


def _quote(value: str) -> str:
    """RFC 2045 quoted-string of an ASCII rendering (RFC 4514 escapes non-ASCII)."""
    ascii_value = value.encode("ascii", "backslashreplace").decode("ascii")
    return '"' + ascii_value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def strip_own_auth_results(raw: bytes, authserv_id: str) -> bytes:
    """Drop incoming Authentication-Results that claim our authserv-id (RFC 8601 §5):
    only we may speak in our name."""
    end = raw.find(b"\r\n\r\n")
    head, body = (raw, b"") if end < 0 else (raw[:end + 2], raw[end + 2:])
    lines = head.split(b"\r\n")
    out: list[bytes] = []
    dropping = False
    own = authserv_id.lower().encode()
    for line in lines:
        if line[:1] in (b" ", b"\t") and dropping:
            continue
        dropping = False
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"authentication-results":
            ident = value.split(b";", 1)[0].strip().split()[:1]
            if ident and ident[0].lower() == own:
                dropping = True
                continue
        out.append(line)
    return b"\r\n".join(out) + body


class MxSMTP(SMTP):
    """aiosmtpd's engine with enhanced status codes on its stock replies."""

    def __init__(self, *args: Any, runtime: "Runtime", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self._in_ehlo = False

    def connection_made(self, transport: Any) -> None:
        first = self._original_transport is None and self.transport is None
        super().connection_made(transport)
        if first:
            self.runtime.sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.runtime.sessions.discard(self)
        super().connection_lost(error)

    async def smtp_EHLO(self, arg: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(arg)
        finally:
            self._in_ehlo = False

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd reads "<>" as no address and answers 501; the null reverse-path is
        # what bounces and DSNs use (RFC 5321 §4.5.5) and must be accepted.
        stripped = arg.lstrip()
        if stripped.startswith("<>"):
            return NULL_SENDER, stripped[2:].strip()
        return super()._getaddr(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        # No AUTH on the MX: professionals are identified by their certificate.
        await self.push("502 5.5.1 AUTH non proposé sur le MX / AUTH not offered on the MX")

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA with the chunked reader of data.py (same checks, same hook)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Erreur: RCPT d'abord / Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntaxe: DATA / Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content = await read_dot_data(self._reader, self.data_size_limit or 2**31)
        except TooBig:
            self._set_post_data_state()
            await self.push(self.event_handler.refuse(MESSAGE_TOO_BIG, "data", self.session))
            return
        if content is None:  # the client hung up: nothing to answer, nothing stored
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and not self._in_ehlo:
            status = with_enhanced_code(status)
        await super().push(status)

    @property
    def in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None


class MxHandler:
    def __init__(self, runtime: "Runtime"):
        self.rt = runtime

    def refuse(self, d: Decision, stage: str, session: Session, **kw: Any) -> str:
        log.info("message.refused", code=d.code, status=d.status, rule=d.rule, reason=d.en, stage=stage,
                 peer=session.peer[0] if session.peer else None, **kw)
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
                return "501 5.1.7 Adresse expéditeur invalide / Bad sender address syntax"
            domain = parsed.domain
        refusal = check_sender(self.rt.trust.trust, domain, subject)
        if refusal is not None:
            return self.refuse(refusal, "mail", session, sender_domain=domain)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        session.sender_domain = domain  # type: ignore[attr-defined]
        envelope.mailboxes = []  # type: ignore[attr-defined]
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.rt.config.max_recipients:
            return self.refuse(TOO_MANY_RECIPIENTS, "rcpt", session)
        c = classify_recipient(address, self.rt.config.domain)
        if isinstance(c, Decision):
            return self.refuse(c, "rcpt", session)
        if c.kind is AddressKind.TEST or c.ins is None:
            # The TEST auto-reply is not built yet (issue 3): say so rather than
            # swallow the message.
            return self.refuse(UNKNOWN_MAILBOX, "rcpt", session, test_address=True)
        ins_hash = self.rt.master.pseudonym(c.ins.value)
        try:
            mbox = await self.rt.store.cached_mailbox(c.ins.value)
        except Exception as e:
            log.error("store.read_failed", error=type(e).__name__)
            return self.refuse(STORE_UNAVAILABLE, "rcpt", session, ins_hash=ins_hash)
        refusal = mailbox_decision(mbox.state if mbox else None)
        if refusal is not None:
            return self.refuse(refusal, "rcpt", session, ins_hash=ins_hash)
        assert mbox is not None
        if any(m.id == mbox.id for m in envelope.mailboxes):  # type: ignore[attr-defined]
            return "250 2.1.5 OK (doublon / duplicate recipient)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.mailboxes.append(mbox)  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    def _trace_headers(self, session: Session, envelope: Envelope, queue_id: str) -> bytes:
        assert session.ssl is not None  # MAIL was refused without TLS
        ssl_object: ssl.SSLObject = session.ssl["ssl_object"]
        version = ssl_object.version() or "unknown"
        cipher = (ssl_object.cipher() or ("unknown",))[0]
        subject: str = session.cert_subject  # type: ignore[attr-defined]
        now = format_datetime(dt.datetime.now(dt.timezone.utc))
        peer_ip = session.peer[0] if session.peer else "unknown"
        helo = (session.host_name or "unknown").encode("ascii", "backslashreplace").decode()
        rcpt = f"\r\n\tfor <{envelope.rcpt_tos[0]}>" if len(envelope.rcpt_tos) == 1 else ""
        host = self.rt.config.hostname
        # RFC 5321 §4.4 trace; "ESMTPS" = ESMTP over TLS (RFC 3848).
        received = (f"Received: from {helo} ([{peer_ip}])\r\n"
                    f"\t(using {version} with cipher {cipher})\r\n"
                    f"\tby {host} (mssante-relay) with ESMTPS id {queue_id}{rcpt};\r\n"
                    f"\t{now}\r\n")
        mailfrom = session.sender_domain or "null"  # type: ignore[attr-defined]
        # RFC 8601: our verdict on the channel, "x-" method (no registered method
        # exists for a TLS client certificate).
        auth = (f"Authentication-Results: {host};\r\n"
                f"\tx-mssante-tls=pass smtp.mailfrom={mailfrom}\r\n"
                f"\tpolicy.tls-version={version} policy.tls-cipher={cipher}\r\n"
                f"\tpolicy.client-cert-subject={_quote(subject)}\r\n")
        return (received + auth).encode("ascii")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        mailboxes = envelope.mailboxes  # type: ignore[attr-defined]
        hashes = [self.rt.master.pseudonym(m.ins) for m in mailboxes]
        if has_bare_line_ending(raw):
            return self.refuse(BARE_LINE_ENDING, "data", session, ins_hash=hashes)
        queue_id = uuid.uuid4().hex[:16]
        stored = self._trace_headers(session, envelope, queue_id) + \
            strip_own_auth_results(raw, self.rt.config.hostname)
        try:
            await self.rt.store.deliver(mailboxes, stored)
        except Exception as e:
            log.error("store.deliver_failed", error=type(e).__name__, queue_id=queue_id)
            return self.refuse(STORE_UNAVAILABLE, "data", session, ins_hash=hashes, queue_id=queue_id)
        log.info("message.accepted", queue_id=queue_id, size=len(stored), recipients=len(mailboxes),
                 ins_hash=hashes, sender_domain=session.sender_domain,  # type: ignore[attr-defined]
                 tls=session.ssl["ssl_object"].version() if session.ssl else None)
        return f"250 2.0.0 OK: stocké / stored as {queue_id}"
