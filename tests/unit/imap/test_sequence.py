"""Sequence sets (RFC 9051 §9): parsing, expansion against the numbers in use,
membership and the compact form, with properties checked against a naive model."""
from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.imap.sequence import (
    MAX_NUMBER,
    ParseError,
    compress,
    contains,
    expand,
    intervals,
    membership,
    parse_sequence_set,
)
from relay.imap.types import SeqRange, SequenceSet


@pytest.mark.parametrize("text, ranges", [
    ("1", [(1, 1)]),
    ("1:5", [(1, 5)]),
    ("5:1", [(5, 1)]),
    ("*", [(None, None)]),
    ("3:*", [(3, None)]),
    ("*:3", [(None, 3)]),
    ("1,3:5,7", [(1, 1), (3, 5), (7, 7)]),
    ("4294967295", [(MAX_NUMBER, MAX_NUMBER)]),
])
def test_parse(text: str, ranges: list[tuple[int | None, int | None]]) -> None:
    assert parse_sequence_set(text) == SequenceSet(tuple(SeqRange(a, b) for a, b in ranges))


@pytest.mark.parametrize("text", [
    "", "0", "0:5", "5:0", "01", "1,", ",1", "1,,2", "1:", ":1", "1:2:3", "$", "1,$",
    "4294967296", "99999999999999999999", "-1", "+1", "a", "1 ", "1:**", "１", "²",
])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ParseError):
        parse_sequence_set(text)


def test_expand_examples() -> None:
    # RFC 9051 §9 seq-range example: "2,4:7,9,12:*" with 15 messages.
    assert expand(parse_sequence_set("2,4:7,9,12:*"), 15) == [2, 4, 5, 6, 7, 9, 12, 13, 14, 15]
    assert expand(parse_sequence_set("5:1"), 10) == [1, 2, 3, 4, 5]
    assert expand(parse_sequence_set("3,1,2,3"), 10) == [1, 2, 3]
    assert expand(parse_sequence_set("*"), 7) == [7]


def test_star_with_empty_mailbox_yields_nothing() -> None:
    for text in ("*", "1:*", "*:5", "3"):
        assert expand(parse_sequence_set(text), 0) == []
        assert not contains(parse_sequence_set(text), 0, 0)


def test_n_star_beyond_largest_covers_largest() -> None:
    # RFC 9051 §6.4.8: "n:*" with n above the largest number in use is "largest:n".
    assert expand(parse_sequence_set("20:*"), 15) == [15]
    assert contains(parse_sequence_set("20:*"), 15, 15)
    assert expand(parse_sequence_set("20"), 15) == []


def test_huge_ranges_are_not_iterated() -> None:
    seqset = parse_sequence_set("1:4294967295,4000000000:*,*:3000000000")
    started = time.perf_counter()
    assert expand(seqset, 10) == list(range(1, 11))
    assert intervals(seqset, 10) == [(1, 10)]
    assert contains(seqset, 10, 10)
    assert intervals(parse_sequence_set("1:4294967295"), MAX_NUMBER) == [(1, MAX_NUMBER)]
    assert contains(parse_sequence_set("1:4294967295"), 123456789, MAX_NUMBER)
    assert time.perf_counter() - started < 0.5


def test_intervals_merge_adjacent() -> None:
    assert intervals(parse_sequence_set("1:3,4,6:8,7:9"), 100) == [(1, 4), (6, 9)]


def test_compress() -> None:
    assert compress([]) == ""
    assert compress([7]) == "7"
    assert compress([3, 1, 2, 7]) == "1:3,7"
    assert compress([1, 2, 2, 5, 6, 9, 10, 11]) == "1:2,5:6,9:11"
    assert compress(iter([4, 4])) == "4"
    with pytest.raises(ValueError):
        compress([0, 1])
    with pytest.raises(ValueError):
        compress([MAX_NUMBER + 1])


# -- properties against a naive model -------------------------------------------------

_bound = st.one_of(st.none(), st.integers(1, 40))
_seqsets = st.lists(st.builds(SeqRange, _bound, _bound), min_size=1, max_size=6).map(
    lambda ranges: SequenceSet(tuple(ranges)))


def _naive(seqset: SequenceSet, largest: int) -> list[int]:
    covered: set[int] = set()
    for rng in seqset.ranges:
        a = largest if rng.start is None else rng.start
        b = largest if rng.end is None else rng.end
        covered.update(n for n in range(min(a, b), max(a, b) + 1) if 1 <= n <= largest)
    return sorted(covered)


def _text(seqset: SequenceSet) -> str:
    def one(n: int | None) -> str:
        return "*" if n is None else str(n)
    return ",".join(one(r.start) if r.start == r.end else f"{one(r.start)}:{one(r.end)}"
                    for r in seqset.ranges)


@given(_seqsets, st.integers(0, 50))
def test_expand_agrees_with_naive(seqset: SequenceSet, largest: int) -> None:
    assert expand(seqset, largest) == _naive(seqset, largest)


@given(_seqsets, st.integers(0, 50))
def test_contains_agrees_with_expand(seqset: SequenceSet, largest: int) -> None:
    covered = set(expand(seqset, largest))
    for n in range(largest + 2):
        assert contains(seqset, n, largest) == (n in covered)


@given(_seqsets, st.integers(1, 50))
def test_compress_round_trips(seqset: SequenceSet, largest: int) -> None:
    numbers = expand(seqset, largest)
    text = compress(numbers)
    if numbers:
        assert expand(parse_sequence_set(text), largest) == numbers
        assert len(text) <= len(",".join(map(str, numbers)))
    else:
        assert text == ""


@given(_seqsets)
def test_parse_round_trips_text(seqset: SequenceSet) -> None:
    assert parse_sequence_set(_text(seqset)) == seqset


@given(st.text(alphabet="0123456789:*,$-", max_size=20))
def test_parse_only_raises_parse_error(text: str) -> None:
    try:
        parse_sequence_set(text)
    except ParseError:
        pass


@given(_seqsets, st.integers(0, 50))
def test_membership_agrees_with_expand(seqset: SequenceSet, largest: int) -> None:
    covered = set(expand(seqset, largest))
    members = membership(seqset, largest)
    assert len(members) == len(covered)
    for n in range(-1, largest + 3):
        assert (n in members) == (n in covered)
