"""Values that cross the IMAP modules: what the parser produces (sequence sets, fetch
attributes, search keys) and what fetch/search read (a message view).

parser.py builds them, fetch.py and search.py consume them, server.py wires them to
the store. Pure data, no I/O.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SeqRange:
    """One element of a sequence set (RFC 3501 §9 "sequence-set"): n, n:m or with "*".
    None stands for "*" (the largest number in use). start may be > end (RFC 3501:
    "2:4" and "4:2" are the same)."""

    start: int | None
    end: int | None


@dataclass(frozen=True, slots=True)
class SequenceSet:
    ranges: tuple[SeqRange, ...]
    saved: bool = False  # "$" (RFC 5182 SEARCHRES), not supported yet: the parser refuses it


@dataclass(frozen=True, slots=True)
class Section:
    """BODY[section] (RFC 3501 §6.4.5): part numbers, then an optional text specifier.

    part=() and text=None is BODY[] (the whole message). text is one of "HEADER",
    "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME" (MIME only after a part
    number). fields holds the header names of HEADER.FIELDS(.NOT), upper-cased.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReturnOpts:
    """SEARCH / SORT RETURN options (RFC 4731 §3, RFC 5267 §4): the option names, upper-
    cased, in the client's order without repeats ("RETURN ()" is ALL); partial: PARTIAL's
    range normalised low:high (both < 0: counted from the last result, RFC 9394 §3.1)."""

    opts: tuple[str, ...]
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One fetch attribute (RFC 3501 §6.4.5, RFC 9051 §6.4.5, RFC 3516 BINARY).

    name: FLAGS, INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE, BODY (the
    non-extensible structure, when section is None), UID, RFC822, RFC822.HEADER,
    RFC822.TEXT, BODY (with a section), BINARY, BINARY.SIZE.
    The macros ALL, FAST, FULL are expanded by the parser.
    partial: (offset, count) of "<offset.count>".
    """

    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class SearchKey:
    """One search key (RFC 3501 §6.4.4 / RFC 9051 §6.4.4).

    op is the key's name, upper-cased: ALL, ANSWERED, BCC, BEFORE, BODY, CC, DELETED,
    DRAFT, FLAGGED, FROM, HEADER, KEYWORD, LARGER, NEW, NOT, OLD, ON, OR, RECENT, SEEN,
    SENTBEFORE, SENTON, SENTSINCE, SINCE, SMALLER, SUBJECT, TEXT, TO, UID, UNANSWERED,
    UNDELETED, UNDRAFT, UNFLAGGED, UNKEYWORD, UNSEEN, plus two of ours:
    AND (a parenthesised list: args are SearchKeys) and SEQ (a bare sequence set).
    args by op: strings (str, already decoded with the command's CHARSET) for BCC, BODY,
    CC, FROM, SUBJECT, TEXT, TO, KEYWORD, UNKEYWORD; (field name, value) for HEADER;
    a dt.date for the date keys; an int for LARGER/SMALLER; a SequenceSet for UID and
    SEQ; SearchKeys for NOT (one), OR (two), AND (any number).
    """

    op: str
    args: tuple[object, ...] = ()


@dataclass(slots=True)
class MessageView:
    """What fetch and search know of one message of the selected mailbox."""

    seq: int  # message sequence number (1-based) in the session's view
    uid: int
    flags: frozenset[str]  # system flags with their backslash (\\Seen), keywords as is
    internal_date: dt.datetime  # timezone-aware
    size: int  # RFC822.SIZE: octets of the stored message
    recent: bool = False
    extra: dict[str, object] = field(default_factory=dict)
    modseq: int = 0  # RFC 7162 MODSEQ, as the session's view knows it
