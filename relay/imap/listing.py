"""Which names LIST and LSUB answer, with which attributes (RFC 3501 §6.3.8-9, RFC 5258
LIST-EXTENDED, RFC 6154 SPECIAL-USE). Pure: the session gives the folders, the
subscriptions and the command's options, and writes what comes back.

- Without the SUBSCRIBED selection option the names are the folders (and the
  namespace nodes, \\Noselect); RETURN (SUBSCRIBED) marks the subscribed ones.
- With it (and for LSUB) the names are the subscriptions, existing or not: a
  subscribed name whose folder is gone is \\NonExistent (RFC 5258 §3.4).
- A name the patterns match that is not itself subscribed, but has a subscribed
  descendant the patterns do not match, is shown for that descendant's sake: LSUB
  with \\Noselect (RFC 3501 §6.3.9, the "%" case), LIST (SUBSCRIBED RECURSIVEMATCH)
  with CHILDINFO ("SUBSCRIBED") (RFC 5258 §3.5)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

SEPARATOR = "/"
SELECTION_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})


@dataclass(frozen=True)
class Node:
    """A listable name: a folder (selectable) or a namespace node (not)."""
    name: str
    selectable: bool
    special_use: str | None = None


@dataclass
class Entry:
    name: str
    attrs: list[str] = field(default_factory=list)
    childinfo: bool = False  # RFC 5258 §3.5 CHILDINFO ("SUBSCRIBED") extended data


def selection_problem(selection: Iterable[str]) -> str | None:
    """Why a LIST selection is invalid (RFC 5258 §6: the client gets BAD), or None."""
    options = set(selection)
    unknown = sorted(options - SELECTION_OPTIONS)
    if unknown:
        return f"option de selection inconnue / unknown selection option {unknown[0][:40]}"
    # RFC 5258 §3.1: RECURSIVEMATCH modifies another option; alone (or with REMOTE,
    # which selects nothing by itself) it is an error
    if "RECURSIVEMATCH" in options and not options - {"RECURSIVEMATCH", "REMOTE"}:
        return "RECURSIVEMATCH seul / RECURSIVEMATCH needs another selection option"
    return None


def _ancestors(name: str) -> list[str]:
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


def entries(nodes: list[Node], subscribed: set[str], matches: Callable[[str], bool], *,
            lsub: bool, selection: set[str], returns: set[str]) -> list[Entry]:
    """The LIST or LSUB answer, in the order of the folders, then subscribed names
    that have no folder."""
    by_name = {n.name: n for n in nodes}
    names = list(by_name)
    parents = {a for n in names for a in _ancestors(n)}
    subscribed_only = lsub or "SUBSCRIBED" in selection
    mark_subscribed = not lsub and ("SUBSCRIBED" in returns or "SUBSCRIBED" in selection)

    def attrs_of(name: str) -> list[str]:
        node = by_name.get(name)
        out: list[str] = []
        if node is None:
            out.append("\\NonExistent" if not lsub else "\\Noselect")
        else:
            if not node.selectable:
                out.append("\\Noselect")
            out.append("\\HasChildren" if name in parents else "\\HasNoChildren")
            if node.special_use and not lsub:
                out.append(node.special_use)
        if mark_subscribed and name in subscribed:
            out.append("\\Subscribed")
        return out

    if not subscribed_only:
        special_only = "SPECIAL-USE" in selection
        return [Entry(n.name, attrs_of(n.name)) for n in nodes
                if matches(n.name) and not (special_only and not n.special_use)]

    # the subscribed names, those with a folder first in the folders' order
    ordered = [n for n in names if n in subscribed] + sorted(subscribed - by_name.keys())
    out = [Entry(name, attrs_of(name)) for name in ordered if matches(name)]
    if "SPECIAL-USE" in selection:
        out = [e for e in out if e.name in by_name and by_name[e.name].special_use]
    if lsub or "RECURSIVEMATCH" in selection:
        shown = {e.name for e in out}
        # a subscribed descendant hidden from the patterns brings its matching ancestor
        hidden = [n for n in ordered if not matches(n)]
        extra: list[str] = []
        for name in hidden:
            for a in _ancestors(name):
                if a not in shown and a not in extra and matches(a):
                    extra.append(a)
        for e in out:  # RFC 5258 §3.5: a shown name with a hidden subscribed child
            e.childinfo = not lsub and any(h.startswith(e.name + SEPARATOR) for h in hidden)
        for a in extra:
            if lsub:
                out.append(Entry(a, ["\\Noselect"]))
            else:
                out.append(Entry(a, [x for x in attrs_of(a) if x != "\\Subscribed"], childinfo=True))
    return out
