"""LIST/LSUB decisions (relay/imap/listing.py): RFC 3501 §6.3.8-9, RFC 5258."""
from __future__ import annotations

import re

from relay.imap.listing import Entry, Node, entries, selection_problem

FOLDERS = [Node("INBOX", True), Node("Sent", True, "\\Sent"), Node("A", True), Node("A/B", True),
           Node("A/C", True), Node("Other Users", False)]


def _matcher(*patterns: str):  # type: ignore[no-untyped-def]
    regexes = [re.compile(re.escape(p).replace(r"\*", ".*").replace("%", "[^/]*") + "$") for p in patterns]
    return lambda name: any(r.match(name) for r in regexes)


def _show(out: list[Entry]) -> list[tuple[str, list[str], bool]]:
    return [(e.name, e.attrs, e.childinfo) for e in out]


def test_selection_options_checked() -> None:
    assert selection_problem([]) is None
    assert selection_problem(["SUBSCRIBED", "RECURSIVEMATCH"]) is None
    assert selection_problem(["REMOTE"]) is None
    assert selection_problem(["IMAPTEST"]) is not None
    assert selection_problem(["RECURSIVEMATCH"]) is not None
    assert selection_problem(["RECURSIVEMATCH", "REMOTE"]) is not None


def test_plain_list_marks_subscribed_only_when_asked() -> None:
    out = entries(FOLDERS, {"A/B"}, _matcher("A*"), lsub=False, selection=set(), returns=set())
    assert _show(out) == [("A", ["\\HasChildren"], False), ("A/B", ["\\HasNoChildren"], False),
                          ("A/C", ["\\HasNoChildren"], False)]
    out = entries(FOLDERS, {"A/B"}, _matcher("A/*"), lsub=False, selection=set(), returns={"SUBSCRIBED"})
    assert _show(out)[0] == ("A/B", ["\\HasNoChildren", "\\Subscribed"], False)


def test_subscribed_selection_lists_gone_folders_as_nonexistent() -> None:
    out = entries(FOLDERS, {"A/B", "A/Gone"}, _matcher("A/*"), lsub=False, selection={"SUBSCRIBED"},
                  returns=set())
    assert _show(out) == [("A/B", ["\\HasNoChildren", "\\Subscribed"], False),
                          ("A/Gone", ["\\NonExistent", "\\Subscribed"], False)]


def test_recursivematch_brings_the_parent_with_childinfo() -> None:
    sel = {"SUBSCRIBED", "RECURSIVEMATCH"}
    out = entries(FOLDERS, {"A/B"}, _matcher("%"), lsub=False, selection=sel, returns=set())
    assert _show(out) == [("A", ["\\HasChildren"], True)]
    # the child matched by another pattern: the parent is not shown for it
    out = entries(FOLDERS, {"A/B"}, _matcher("A", "A/B"), lsub=False, selection=sel, returns=set())
    assert _show(out) == [("A/B", ["\\HasNoChildren", "\\Subscribed"], False)]
    # without RECURSIVEMATCH, only the subscribed names
    assert entries(FOLDERS, {"A/B"}, _matcher("%"), lsub=False, selection={"SUBSCRIBED"}, returns=set()) == []


def test_lsub_percent_shows_unsubscribed_parent_noselect() -> None:
    out = entries([n for n in FOLDERS if n.selectable], {"A/B", "INBOX"}, _matcher("%"), lsub=True,
                  selection=set(), returns=set())
    assert _show(out) == [("INBOX", ["\\HasNoChildren"], False), ("A", ["\\Noselect"], False)]
    out = entries([n for n in FOLDERS if n.selectable], {"A/B"}, _matcher("*"), lsub=True,
                  selection=set(), returns=set())
    assert [e.name for e in out] == ["A/B"]  # "*" reaches the child itself
