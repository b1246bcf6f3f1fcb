"""Sequence sets (RFC 3501 §9 / RFC 9051 §9 "sequence-set"): parsing, expansion against
the numbers in use, membership, and the compact "1:3,7" form UIDPLUS (RFC 4315) and
ESEARCH (RFC 4731) responses need.

A set is kept as its ranges, never as a list of numbers: "1:4294967295" is a legal
client request and must cost as much as "1:10". Everything here works on intervals
clipped to 1..largest, and only `expand` materialises numbers (at most `largest` of them).

ParseError lives here rather than in parser.py because parser.py imports this module;
parser.py re-exports it so handlers only ever import it from there.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from relay.imap.types import SeqRange, SequenceSet

# RFC 9051 §9: nz-number is a 32-bit unsigned value ("number" has the same bound).
MAX_NUMBER = 4294967295
# "4294967295" has 10 digits; checking the length first keeps int() cheap and bounded.
_MAX_DIGITS = 10


class ParseError(Exception):
    """A command the server cannot parse. The server answers "tag BAD message" when the
    tag is known (`tag` is set), and "* BAD message" otherwise. Messages are 7-bit
    (French without accents, then English): IMAP4rev1 resp-text is US-ASCII."""

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag


def _seq_number(text: str) -> int | None:
    """RFC 9051 §9 seq-number = nz-number / "*"; None stands for "*"."""
    if text == "*":
        return None
    # nz-number = digit-nz *DIGIT: no sign, no leading zero, no empty part.
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        raise ParseError(f"numero invalide dans l'ensemble {text[:20]!a} / "
                         f"invalid number in sequence set {text[:20]!a}")
    if text[0] == "0":
        raise ParseError("les numeros commencent a 1 / sequence numbers start at 1")
    value = int(text)
    if value > MAX_NUMBER:
        raise ParseError("numero superieur a 4294967295 / number above 4294967295")
    return value


def parse_sequence_set(text: str) -> SequenceSet:
    """Parse "1", "1:5", "5:1", "*", "3:*", "1,3:5,7". Refuses 0, empty parts, numbers
    above 2^32-1 and "$" (RFC 5182 SEARCHRES, which we do not advertise)."""
    if "$" in text:
        raise ParseError("resultat de recherche sauvegarde ($) non pris en charge / "
                         "saved search result ($) is not supported")
    if not text:
        raise ParseError("ensemble de numeros vide / empty sequence set")
    ranges: list[SeqRange] = []
    for part in text.split(","):
        bounds = part.split(":")
        if len(bounds) == 1:
            number = _seq_number(bounds[0])
            ranges.append(SeqRange(number, number))
        elif len(bounds) == 2:
            ranges.append(SeqRange(_seq_number(bounds[0]), _seq_number(bounds[1])))
        else:
            raise ParseError(f"intervalle invalide {part[:20]!a} / invalid range {part[:20]!a}")
    return SequenceSet(tuple(ranges))


def intervals(seqset: SequenceSet, largest: int) -> list[tuple[int, int]]:
    """The set as sorted, disjoint, non-adjacent closed intervals within 1..largest.

    RFC 9051 §9 seq-range: "*" is the largest number in use and a range covers the
    numbers between its two ends whatever their order; so "n:*" with n > largest is
    "largest:n" and covers largest, and nothing is covered when largest is 0.
    """
    if largest <= 0:
        return []
    clipped: list[tuple[int, int]] = []
    for rng in seqset.ranges:
        a = largest if rng.start is None else rng.start
        b = largest if rng.end is None else rng.end
        low, high = min(a, b), min(max(a, b), largest)
        low = max(low, 1)
        if low <= high:
            clipped.append((low, high))
    clipped.sort()
    merged: list[tuple[int, int]] = []
    for low, high in clipped:
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def expand(seqset: SequenceSet, largest: int) -> list[int]:
    """Sorted distinct numbers in 1..largest that the set covers."""
    return [n for low, high in intervals(seqset, largest) for n in range(low, high + 1)]


@dataclass(frozen=True, slots=True)
class Membership:
    """A set's intervals ready for membership tests: O(log ranges) per number.

    Built once per command (O(ranges log ranges)) and then asked for each message: a
    SEARCH of a 10,000-element set over 10,000 messages walked every range for every
    message (10^8 steps, 10 s on the event loop) before this existed."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def __contains__(self, n: object) -> bool:
        if not isinstance(n, int):
            return False
        i = bisect.bisect_right(self.starts, n) - 1
        return i >= 0 and n <= self.ends[i]

    def __len__(self) -> int:
        """How many numbers the set covers."""
        return sum(e - s + 1 for s, e in zip(self.starts, self.ends, strict=True))


def membership(seqset: SequenceSet, largest: int) -> Membership:
    merged = intervals(seqset, largest)
    return Membership(tuple(a for a, _ in merged), tuple(b for _, b in merged))


def contains(seqset: SequenceSet, n: int, largest: int) -> bool:
    """Whether n (a number in 1..largest) is in the set, without expanding it. One
    number: O(ranges). To test many numbers against one set, build `membership` once."""
    if n < 1 or n > largest:
        return False
    for rng in seqset.ranges:
        a = largest if rng.start is None else rng.start
        b = largest if rng.end is None else rng.end
        if min(a, b) <= n <= max(a, b):
            return True
    return False


def compress(numbers: Iterable[int]) -> str:
    """The shortest sequence-set text for the numbers: runs become "a:b", in ascending
    order ("1:3,7"). Returns "" for no numbers: a sequence set cannot be empty, so the
    caller leaves the item out (RFC 4731: ESEARCH omits ALL when nothing matched)."""
    ordered = sorted(set(numbers))
    if ordered and (ordered[0] < 1 or ordered[-1] > MAX_NUMBER):
        raise ValueError("sequence numbers must be within 1..4294967295")
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)
