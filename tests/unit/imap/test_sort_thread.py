"""SORT and THREAD (RFC 5256), pure parts: base subject, sort keys, the two threading
algorithms and the thread-list rendering (relay/imap/sortkeys.py, sort.py, thread.py)."""
from __future__ import annotations

import datetime as dt

import pytest

from relay.imap import thread
from relay.imap.sort import parse_criteria, sort
from relay.imap.sortkeys import SortCache, SortFields, base_subject, extract
from relay.imap.types import MessageView

BASE = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone.utc)


def item(seq: int, header: str, minutes: int = 0, size: int = 100) -> tuple[MessageView, SortFields]:
    view = MessageView(seq=seq, uid=seq * 10, flags=frozenset(), internal_date=BASE + dt.timedelta(minutes=minutes),
                       size=size)
    return view, extract(header.replace("\n", "\r\n").encode() + b"\r\n\r\nbody\r\n")


@pytest.mark.parametrize("subject, base, reply", [
    ("Compte rendu", "Compte rendu", False),
    ("Re: Compte rendu", "Compte rendu", True),
    ("RE: re:  Fwd: Compte   rendu (fwd)", "Compte rendu", True),
    ("[liste] Re: [mssante] Compte rendu", "Compte rendu", True),
    ("Re [2]: Compte rendu", "Compte rendu", True),
    ("[Fwd: Re: Compte rendu]", "Compte rendu", True),
    ("[seulement un blob]", "[seulement un blob]", False),
    ("  \t ", "", False),
    ("Fw: resultats", "resultats", True),
])
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


def test_extract_reads_headers_only_and_decodes() -> None:
    f = extract(b"From: =?utf-8?q?Dr_=C3=89mile?= <Emile@Hopital.fr>\r\nTo: x@y.fr\r\n"
                b"Subject: =?utf-8?q?Re=3A_R=C3=A9sultats?=\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
                b"Message-ID: <m1@h>\r\nIn-Reply-To: <m0@h> (old)\r\n\r\nFrom: not@this.fr\r\n")
    assert f.subject == "RéSULTATS" and f.is_reply  # i;ascii-casemap: only ASCII letters
    assert f.from_mailbox == "EMILE" and f.display_from == "DR ÉMILE" and f.to_mailbox == "X"
    assert f.sent == dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc).timestamp()
    assert f.message_id == "<m1@h>" and f.references == ("<m0@h>",)
    # References wins over In-Reply-To; a bad Date is no date (the INTERNALDATE is used)
    g = extract(b"References: <a@h> <b@h>\r\nIn-Reply-To: <c@h>\r\nDate: hier\r\n\r\n")
    assert g.references == ("<a@h>", "<b@h>") and g.sent is None


def test_sort_keys_reverse_and_ties_in_sequence_order() -> None:
    msgs = [item(1, "Subject: b\nFrom: z@x", minutes=3, size=5), item(2, "Subject: Re: a\nFrom: y@x", minutes=1),
            item(3, "Subject: B\nFrom: y@x", minutes=2, size=50), item(4, "Subject: a\nFrom: a@x", minutes=0)]
    seqs = lambda crit: [v.seq for v in sort(msgs, parse_criteria(crit))]  # noqa: E731
    assert seqs(["SUBJECT"]) == [2, 4, 1, 3]
    assert seqs(["SUBJECT", "REVERSE", "SIZE"]) == [2, 4, 3, 1]
    assert seqs(["REVERSE", "ARRIVAL"]) == [1, 3, 2, 4]
    assert seqs(["DATE"]) == [4, 2, 3, 1]  # no Date: the INTERNALDATE
    assert seqs(["FROM"]) == [4, 2, 3, 1]
    for bad in (["REVERSE"], [], ["SUBJECT", "FOO"], ["REVERSE", "REVERSE", "DATE"]):
        with pytest.raises(ValueError):
            parse_criteria(bad)


def test_references_threads_by_references_then_subject() -> None:
    msgs = [
        item(1, "Message-ID: <a@h>\nSubject: bilan", minutes=0),
        item(2, "Message-ID: <b@h>\nReferences: <a@h>\nSubject: Re: bilan", minutes=5),
        item(3, "Message-ID: <c@h>\nReferences: <a@h>\nSubject: Re: bilan", minutes=3),
        item(4, "Message-ID: <d@h>\nReferences: <a@h> <c@h>\nSubject: Re: bilan", minutes=4),
        item(5, "Message-ID: <e@h>\nSubject: autre", minutes=1),
        # references a message we do not have, and shares the first thread's subject
        item(6, "Message-ID: <f@h>\nReferences: <zz@h>\nSubject: Re: bilan", minutes=6),
        item(7, "Message-ID: <a@h>\nSubject: doublon", minutes=7),  # duplicate Message-ID
    ]
    assert thread.render(thread.references(msgs), uid=False) == b"(1 (3 4)(2)(6))(5)(7)"
    assert thread.render(thread.references(msgs), uid=True) == b"(10 (30 40)(20)(60))(50)(70)"


def test_references_survive_loops_and_long_chains() -> None:
    loop = [item(1, "Message-ID: <a@h>\nReferences: <b@h>"), item(2, "Message-ID: <b@h>\nReferences: <a@h>")]
    assert thread.render(thread.references(loop), uid=False) in (b"(1 2)", b"(2 1)")
    # a chain deeper than Python's recursion limit: nothing recursive may be involved
    chain = [item(i, f"Message-ID: <m{i}@h>" + (f"\nReferences: <m{i - 1}@h>" if i > 1 else ""), minutes=i)
             for i in range(1, 3001)]
    out = thread.render(thread.references(chain), uid=False)
    assert out.startswith(b"(1 2 3 ") and out.endswith(b" 2999 3000)")


def test_ordered_subject() -> None:
    msgs = [item(1, "Subject: b", minutes=2), item(2, "Subject: a", minutes=5), item(3, "Subject: Re: b", minutes=1),
            item(4, "Subject: a", minutes=3), item(5, "Subject: RE: a", minutes=4)]
    # threads by their first message's date; in a thread, the first is the parent of the rest
    assert thread.render(thread.ordered_subject(msgs), uid=False) == b"(3 1)(4 (5)(2))"


def test_sort_cache_is_bounded() -> None:
    cache = SortCache(entries=2)
    f = extract(b"Subject: x\r\n\r\n")
    cache.put("a", f)
    cache.put("b", f)
    assert cache.get("a") is f  # now the most recently used
    cache.put("c", f)
    assert cache.get("b") is None and cache.get("a") is f and cache.get("c") is f
