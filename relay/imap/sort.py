"""SORT (RFC 5256 §3, BASE.6.4.SORT) and the DISPLAYFROM/DISPLAYTO keys of RFC 5957:
the order of the messages a search matched. Pure: the keys come in as SortFields
(sortkeys.py), already extracted; a session may run this in a worker thread."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from relay.imap.sortkeys import SortFields
from relay.imap.types import MessageView

KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})


def sent_date(view: MessageView, fields: SortFields) -> float:
    """RFC 5256 §2.2 sent date: the Date: header in UTC, else the INTERNALDATE."""
    return fields.sent if fields.sent is not None else view.internal_date.timestamp()


_KEY: dict[str, Callable[[MessageView, SortFields], Any]] = {
    "ARRIVAL": lambda v, f: v.internal_date.timestamp(),
    "CC": lambda v, f: f.cc_mailbox,
    "DATE": sent_date,
    "FROM": lambda v, f: f.from_mailbox,
    "SIZE": lambda v, f: v.size,
    "SUBJECT": lambda v, f: f.subject,
    "TO": lambda v, f: f.to_mailbox,
    "DISPLAYFROM": lambda v, f: f.display_from,
    "DISPLAYTO": lambda v, f: f.display_to,
}


def parse_criteria(words: Sequence[str]) -> list[tuple[str, bool]]:
    """(key, reverse) pairs of "(REVERSE SUBJECT DATE ...)"; ValueError if malformed."""
    out: list[tuple[str, bool]] = []
    reverse = False
    for word in (w.upper() for w in words):
        if word == "REVERSE":
            if reverse:
                raise ValueError("REVERSE REVERSE")
            reverse = True
            continue
        if word not in KEYS:
            raise ValueError(f"unknown sort key {word[:40]}")
        out.append((word, reverse))
        reverse = False
    if reverse or not out:
        raise ValueError("a sort key must follow REVERSE")
    return out


def sort(messages: Sequence[tuple[MessageView, SortFields]], criteria: Sequence[tuple[str, bool]]
         ) -> list[MessageView]:
    """The messages in the criteria's order; ties in sequence-number order (RFC 5256
    §3: "the order in the mailbox"). Stable sorts from the last key to the first."""
    items = sorted(messages, key=lambda m: m[0].seq)
    for key, reverse in reversed(criteria):
        get = _KEY[key]
        items.sort(key=lambda m, get=get: get(m[0], m[1]), reverse=reverse)
    return [v for v, _ in items]
