"""RCPT TO checks of the MX, in the order DESIGN.md §4 fixes:
domain, INS syntax and key, unknown mailbox, opposed or closed mailbox."""
from __future__ import annotations

from enum import Enum

from policy.addresses import AddressKind, Classified, classify, split_address
from policy.decisions import BAD_INS, MAILBOX_DISABLED, RELAY_DENIED, UNKNOWN_MAILBOX, Decision


class MailboxState(str, Enum):
    PENDING = "pending"  # created, receives mail, no login yet
    ACTIVE = "active"
    OPPOSED = "opposed"
    CLOSED = "closed"

    @property
    def receives(self) -> bool:
        return self in (MailboxState.PENDING, MailboxState.ACTIVE)


def parse_state(text: str) -> MailboxState:
    try:
        return MailboxState(text.strip().lower())
    except ValueError:
        allowed = "|".join(s.value for s in MailboxState)
        raise ValueError(f"unknown mailbox state {text!r} (expected {allowed})") from None


def classify_recipient(address: str, domain: str) -> Classified | Decision:
    """First two checks (no store needed): a Decision to refuse, else the class."""
    addr = split_address(address)
    if addr is None:
        return BAD_INS
    c = classify(addr, domain)
    if c.kind is AddressKind.FOREIGN:
        return RELAY_DENIED
    if c.kind is AddressKind.BAD_PATIENT:
        return BAD_INS
    return c


def mailbox_decision(state: MailboxState | None) -> Decision | None:
    """Last two checks, given the mailbox's state from the store (None: no such mailbox)."""
    if state is None:
        return UNKNOWN_MAILBOX
    if not state.receives:
        return MAILBOX_DISABLED
    return None
