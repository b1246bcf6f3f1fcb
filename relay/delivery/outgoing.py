"""Putting a message of ours on the outbound queue: the headers every message must
carry (RFC 5322 §3.6: Date and, RFC 5322 §3.6.4 SHOULD, Message-ID), the DKIM
signature (RFC 6376, signed once here: the queue holds the final bytes), then the
queue (mailbox_store/outbound.py)."""
from __future__ import annotations

import datetime as dt
import email.utils
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from certs.dkim import sign
from mailbox_store.outbound import PreparedOutgoing, Recipient, Submitted
from mailbox_store.store import MailboxInfo
from policy.headers import header_block
from relay.core.pools import run_in

if TYPE_CHECKING:
    from relay.core.runtime import Runtime


def has_header(raw: bytes, name: str) -> bool:
    wanted = name.lower().encode() + b":"
    return any(line.lower().startswith(wanted) for line in header_block(raw).split(b"\r\n"))


def complete_headers(raw: bytes, hostname: str) -> bytes:
    """Add Date and Message-ID when the client left them out (RFC 6409 §8.3, §8.4)."""
    extra = b""
    if not has_header(raw, "Date"):
        extra += f"Date: {email.utils.format_datetime(dt.datetime.now(dt.timezone.utc))}\r\n".encode()
    if not has_header(raw, "Message-ID"):
        extra += f"Message-ID: <{uuid.uuid4().hex}@{hostname}>\r\n".encode()
    return extra + raw


async def prepare_outgoing(rt: "Runtime", sender: MailboxInfo, raw: bytes, mail_from: str,
                           recipients: Sequence[Recipient], kind: str,
                           sent_folder: str | None = None) -> PreparedOutgoing:
    """The message completed, signed and sealed for the queue, not yet written: the
    caller commits it (Store.commit_outgoing, or inside a delivery's transaction)."""
    cfg = rt.config
    assert cfg.delivery is not None
    raw = complete_headers(raw, cfg.hostname)
    if rt.dkim is not None and recipients and recipients[0].route == "mssante":
        # RSA over up to 25 MB: in the DKIM pool, not on the event loop (issue 15 §2)
        raw = await run_in(rt.pools and rt.pools.dkim, sign, raw, rt.dkim) + raw
    return await rt.store.prepare_outgoing(sender, raw, mail_from, recipients, kind,
                                           dt.timedelta(seconds=cfg.delivery.lifetime), sent_folder)


async def queue_outgoing(rt: "Runtime", sender: MailboxInfo, raw: bytes, mail_from: str,
                         recipients: Sequence[Recipient], kind: str, sent_folder: str | None = None) -> Submitted:
    prepared = await prepare_outgoing(rt, sender, raw, mail_from, recipients, kind, sent_folder)
    return await rt.store.commit_outgoing(prepared)
