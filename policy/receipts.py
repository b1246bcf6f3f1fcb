"""The read-receipt rule (DESIGN.md §4 "Read receipts", RFC 8098): which request a
professional's message makes, if any. Pure: the MX records the request in the
delivery's transaction (relay/inbound), relay/delivery/receipts.py sends the MDN."""
from __future__ import annotations

from collections.abc import Callable
from email.message import Message
from email.utils import getaddresses  # an address-list reader: no message parser

from policy.conversation import ProfessionalMessage, normalise_address, parse_msg_ids
from policy.mime import Headers


def receipt_request(headers: Message | Headers, msg: ProfessionalMessage,
                    sender_ok: Callable[[str], bool]) -> tuple[str, str | None] | None:
    """(address, Message-ID) when the message asks for a receipt we may send: one
    Disposition-Notification-To address, which is the message's From (RFC 8098 §2.1:
    a receipt to anyone else could be used to send mail), in a domain the sending
    server was authenticated for (`sender_ok`)."""
    values = [str(v) for v in headers.get_all("Disposition-Notification-To", [])]
    asked = [normalise_address(a) for _, a in getaddresses(values)]
    froms = {normalise_address(a) for a in msg.from_addresses}
    if len(asked) != 1 or asked[0] is None or asked[0] not in froms:
        return None
    if not sender_ok(asked[0].rpartition("@")[2]):
        return None
    ids = parse_msg_ids(msg.message_id)
    return asked[0], ids[0] if ids else None
