"""What the MX and submission add to aiosmtpd's protocol engine, in one place.

Implementation notes:
- DATA is read by data.py (RFC 5321 framing, chunked, bounded in memory), with the
  header section checked while it arrives (policy/headers.py: 552 5.3.4 / 554 5.6.0)
  and two clocks: the idle timeout (mx.timeout) restarts at every chunk, as RFC 5321
  §4.5.3.2.5-6 wants for a slow link, and a deadline on the whole transfer
  (mx.data_timeout) ends a sender that trickles a byte at a time: 451 4.4.2, and the
  connection is closed, which frees its session slot.
- No exception text ever reaches a client (aiosmtpd's default answers
  "500 Error: (ExceptionClass) text", SQL included): an unexpected exception is logged
  as an event with its class name and answered 452 4.3.1 when the store is full, else
  451 4.3.0 (RFC 3463 §3.4).
- A reply is one line of US-ASCII: a CR or LF inside it would be read by the client as
  the end of the reply and the start of the next (RFC 5321 §4.2).
- Once the transport is closing (session cap, timeout, too many unknown commands) the
  session ends at its next reply instead of writing into a closed TLS transport:
  aiosmtpd goes on reading what the client pipelined (300 unknown commands: it closes
  after 5 and reads on), and its next write raised AttributeError (_write_appdata),
  logged twice with its traceback.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog
from aiosmtpd.smtp import MISSING, SMTP, TLSSetupException, syntax

from policy.decisions import BYTES_IN_FLIGHT, DATA_TOO_SLOW, LOCAL_ERROR
from policy.headers import HeaderScanner
from relay.core.storefaults import store_failure
from relay.smtp.addrparse import plain_path
from relay.smtp.budget import reserve
from relay.smtp.data import Refused, read_dot_data
from relay.smtp.replies import with_enhanced_code

if TYPE_CHECKING:
    from relay.core.runtime import Runtime

log = structlog.get_logger("relay.smtp")


class RelaySMTP(SMTP):
    runtime: "Runtime"
    _in_ehlo = False  # the MX sets it around EHLO: no enhanced codes on that reply

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
        config = self.runtime.config
        # issue 15 §2: one bound on the message bytes of every session (budget.py)
        reservation = None
        if self.runtime.budget is not None:
            reservation = await reserve(self.runtime.budget, self.envelope.mail_options,
                                        self.data_size_limit or 2**31, config.workers.bytes_wait)
            if reservation is None:
                await self.push(self.event_handler.refuse(BYTES_IN_FLIGHT, "data", self.session))
                return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        status: Any = MISSING
        try:
            # RFC 5321 §4.5.3.2.5-6: the idle timeout runs per data block, not for the
            # whole transfer (a 25 MB message on a slow link), nor while we commit;
            # the whole transfer has its own deadline
            async with asyncio.timeout(config.mx_data_timeout):
                content = await read_dot_data(self._reader, self.data_size_limit or 2**31,
                                              on_progress=self._reset_timeout,
                                              headers=HeaderScanner(config.header_limits),
                                              fits=reservation.fits if reservation is not None else None)
            if content is None:  # the client hung up: nothing to answer, nothing stored
                return
            self.envelope.content = self.envelope.original_content = content
            self._reset_timeout()
            status = await self._call_handler_hook("DATA")
        except Refused as e:
            status = self.event_handler.refuse(e.decision, "data", self.session)
        except TimeoutError:
            # the rest of the data would be read as commands: answer, then hang up
            await self.push(self.event_handler.refuse(DATA_TOO_SLOW, "data", self.session))
            if self.transport is not None:
                self.transport.close()
            return
        finally:
            self._set_post_data_state()
            if reservation is not None:
                reservation.release()
        await self.push("250 OK" if status is MISSING else status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # the common <local@domain> path without the stdlib's header parser (addrparse.py)
        plain = plain_path(arg)
        if plain is None:
            return super()._getaddr(arg)
        if self.local_part_limit and len(plain[0].rpartition("@")[0]) > self.local_part_limit:
            return None, None  # as aiosmtpd's own reading answers it
        return plain

    async def push(self, status: Any) -> None:
        if self.transport is None or self.transport.is_closing():
            # the connection is over: end the session here, as connection_lost would
            assert self._handler_coroutine is not None
            self._handler_coroutine.cancel()
            await asyncio.sleep(0)  # raises CancelledError in this (the session's) task
            return
        if isinstance(status, str):
            if "\r" in status or "\n" in status:
                status = " ".join(status.splitlines())
            # RFC 2034 codes only in EHLO sessions, and never on the EHLO reply itself
            if not self._in_ehlo and self.session is not None and self.session.extended_smtp:
                status = with_enhanced_code(status)
        await super().push(status)

    async def handle_exception(self, error: Exception) -> str:
        peer = self.session.peer[0] if self.session is not None and self.session.peer else None
        if isinstance(error, TLSSetupException):  # aiosmtpd closes the connection
            return LOCAL_ERROR.smtp()  # logged by relay/daemon/tlsevents.py: tls.handshake_failed
        decision = store_failure(error, self.runtime.config) or LOCAL_ERROR
        log.error("smtp.unexpected_error", peer=peer, error=type(error).__name__, code=decision.code,
                  status=decision.status)
        return decision.smtp()

    @property
    def in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None
