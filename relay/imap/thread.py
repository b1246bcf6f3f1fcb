"""THREAD (RFC 5256 §3): ORDEREDSUBJECT and REFERENCES, and the rendering of the
thread list. Pure: messages come in with their SortFields (sortkeys.py); a session may
run this in a worker thread. No recursion: a hostile References chain of any length
cannot exhaust the Python stack.

REFERENCES follows RFC 5256 §3 steps 1-6 (Jamie Zawinski's algorithm)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from relay.imap.sort import sent_date
from relay.imap.sortkeys import SortFields
from relay.imap.types import MessageView

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


@dataclass(eq=False)
class Node:
    """A thread container: a message, or a dummy (view None) standing for a message
    that is referenced but not there (or not matched)."""

    view: MessageView | None = None
    fields: SortFields | None = None
    parent: "Node | None" = None
    children: list["Node"] = field(default_factory=list)
    date: float = 0.0
    seq: int = 0

    def add(self, child: "Node") -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def detach(self) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None

    def has_ancestor(self, other: "Node") -> bool:
        node: Node | None = self
        while node is not None:
            if node is other:
                return True
            node = node.parent
        return False


def ordered_subject(messages: Sequence[tuple[MessageView, SortFields]]) -> list[Node]:
    """RFC 5256 §3 ORDEREDSUBJECT: messages by base subject then sent date; each run of
    one subject is a thread whose first message is the parent of all the others;
    threads by the sent date of their first message."""
    items = sorted(messages, key=lambda m: (m[1].subject, sent_date(*m), m[0].seq))
    roots: list[Node] = []
    for view, f in items:
        node = Node(view, f, date=sent_date(view, f), seq=view.seq)
        if roots and roots[-1].fields is not None and roots[-1].fields.subject == f.subject:
            roots[-1].children.append(node)
            node.parent = roots[-1]
        else:
            roots.append(node)
    roots.sort(key=lambda n: (n.date, n.seq))
    return roots


def references(messages: Sequence[tuple[MessageView, SortFields]]) -> list[Node]:
    """RFC 5256 §3 REFERENCES."""
    table: dict[str, Node] = {}
    order = sorted(messages, key=lambda m: m[0].seq)
    for view, f in order:
        # (1) a message's container; a duplicate Message-ID gets a unique one
        mid = f.message_id
        node = table.get(mid) if mid is not None else None
        if node is None or node.view is not None:
            node = Node()
            table[mid if mid is not None and mid not in table else f"\0{view.uid}"] = node
        node.view, node.fields, node.seq = view, f, view.seq
        node.date = sent_date(view, f)
        # (1A) link the references in a chain, never over an existing parent, never a loop
        prev: Node | None = None
        for ref in f.references:
            cur = table.get(ref)
            if cur is None:
                cur = table[ref] = Node()
            if prev is not None and cur.parent is None and cur is not prev and not prev.has_ancestor(cur):
                prev.add(cur)
            prev = cur
        # (1B) the last reference is the parent: the old link goes first (a truncated
        # References), and the new one is not made if it would close a loop
        node.detach()
        if prev is not None and prev is not node and not prev.has_ancestor(node):
            prev.add(node)
    # (2) the root set
    roots = [n for n in table.values() if n.parent is None]
    # (4) prune dummies, walking each tree with an explicit stack
    roots = _prune(roots)
    # (5) gather root messages of the same base subject
    roots = _gather_subjects(roots)
    # (6) sort siblings by sent date (a dummy takes its first child's), then the roots
    _sort_tree(roots)
    return roots


def _prune(roots: list[Node]) -> list[Node]:
    top = Node()
    for r in roots:
        top.children.append(r)
        r.parent = top
    stack = [top]
    while stack:
        node = stack.pop()
        changed = True
        while changed:
            changed = False
            kids: list[Node] = []
            for child in node.children:
                if child.view is None and not child.children:
                    changed = True
                    continue  # (4A) an empty dummy goes
                if child.view is None and (node is not top or len(child.children) == 1):
                    # (4B) a dummy's children move up, except to the root level when
                    # they are several
                    for grand in child.children:
                        grand.parent = node
                        kids.append(grand)
                    changed = True
                    continue
                kids.append(child)
            node.children = kids
        stack.extend(node.children)
    for r in top.children:
        r.parent = None
    return top.children


def _subject(node: Node) -> SortFields | None:
    if node.fields is not None:
        return node.fields
    return node.children[0].fields if node.children else None


def _gather_subjects(roots: list[Node]) -> list[Node]:
    table: dict[str, Node] = {}
    for node in roots:  # (5B) one container per base subject: a dummy, else a non-reply
        f = _subject(node)
        if f is None or not f.subject:
            continue
        old = table.get(f.subject)
        if old is None or (node.view is None and old.view is not None) or (
                old.view is not None and node.view is not None and old.fields is not None
                and old.fields.is_reply and not f.is_reply):
            table[f.subject] = node
    out = list(roots)
    for node in roots:  # (5C) merge the others into it
        f = _subject(node)
        cont = table.get(f.subject) if f is not None and f.subject else None
        if cont is None or cont is node:
            continue
        assert f is not None
        out.remove(node)
        if cont.view is None and node.view is None:  # both dummies: siblings under the table's
            for child in list(node.children):
                cont.add(child)
        elif cont.view is None or (node.fields is not None and node.fields.is_reply
                                   and cont.fields is not None and not cont.fields.is_reply):
            cont.add(node)  # under the dummy, or a reply under the original
        else:  # a new dummy holds both, in the table container's place
            dummy = Node()
            out[out.index(cont)] = dummy
            dummy.add(cont)
            dummy.add(node)
            table[f.subject] = dummy
    return out


def _sort_tree(roots: list[Node]) -> None:
    # post-order without recursion: children sorted before their parent's date is read
    order: list[Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    for node in reversed(order):
        node.children.sort(key=lambda n: (n.date, n.seq))
        if node.view is None and node.children:
            node.date, node.seq = node.children[0].date, node.children[0].seq
    roots.sort(key=lambda n: (n.date, n.seq))


def render(roots: Sequence[Node], uid: bool) -> bytes:
    """RFC 5256 §4 thread-list: "(3 6 (4 23)(44 7 96))"; one child continues the
    chain, several are each parenthesised. Built with an explicit stack."""
    out: list[bytes] = []
    # each stack item: a node to open, or a literal piece of output
    stack: list[Node | bytes] = []
    for root in reversed(roots):
        stack += [b")", root, b"("]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            out.append(item)
            continue
        node = item
        parts: list[Node | bytes] = []
        if node.view is not None:
            number = node.view.uid if uid else node.view.seq
            parts.append(b"%d" % number)
            if node.children:
                parts.append(b" ")
        if len(node.children) == 1:
            parts.append(node.children[0])
        else:
            for child in node.children:
                parts += [b"(", child, b")"]
        stack.extend(reversed(parts))
    return b"".join(out)
