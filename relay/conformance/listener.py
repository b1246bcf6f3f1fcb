"""`--listen`: the kit's own receiving SMTP server, where the deployment's
acknowledgements, replies, DSNs and MDNs arrive (the operator routes the sender's
domain here). aiosmtpd with STARTTLS (RFC 3207) and the kit's certificate.

A recipient whose local part holds `+refuse-` is refused `550 5.1.1`: the
scenario "a DSN when the professional's side refuses the reply" needs a
professional's server that refuses."""
from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

REFUSE_MARK = "+refuse-"
MAX_MESSAGES = 1000  # what one run keeps; more is a deployment gone mad, not a test
MAX_BYTES = 30 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes = field(repr=False)
    tls: bool
    at: float


class _Handler:
    def __init__(self, sink: Listener):
        self.sink = sink

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if REFUSE_MARK in address.partition("@")[0]:
            return "550 5.1.1 Destinataire refuse par le kit / Recipient refused by the conformance kit"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        self.sink._add(Received(envelope.mail_from or "", tuple(envelope.rcpt_tos), content,
                                session.ssl is not None, time.monotonic()))
        return "250 2.0.0 OK: recu par le kit / received by the conformance kit"


class Listener:
    """Runs in its own thread (aiosmtpd's Controller); `wait` blocks the caller."""

    def __init__(self, host: str, port: int, cert: str, key: str):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self._cond = threading.Condition()
        self.messages: list[Received] = []
        self.controller = Controller(_Handler(self), hostname=host, port=port, tls_context=ctx,
                                     data_size_limit=MAX_BYTES, server_hostname="conformance-kit.invalid",
                                     ready_timeout=30)

    def start(self) -> Listener:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def _add(self, message: Received) -> None:
        with self._cond:
            if len(self.messages) < MAX_MESSAGES:
                self.messages.append(message)
            self._cond.notify_all()

    def wait(self, match: Callable[[Received], bool], timeout: float) -> Received | None:
        """The first message (received so far or within `timeout` s) that `match` accepts."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = next((m for m in self.messages if match(m)), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self._cond.wait(min(left, 1.0))
