"""SORT, ESORT and THREAD (RFC 5256, RFC 5267) against imaplib, on messages delivered
by the MX: the keys come from the headers, cached, and searching narrows the set."""
from __future__ import annotations

import re

from tests.integration.conftest import RunningDaemon, message
from tests.integration.test_imap_condstore import raw


def _deliver_thread(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="Bilan sanguin", body="un\r\n", message_id="<t1@test-operator.mssante.fr>",
                          extra="Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n"))
    relay.deliver(message(subject="Ordonnance", body="deux\r\n", message_id="<t2@test-operator.mssante.fr>",
                          extra="Date: Mon, 23 Nov 2026 09:00:00 +0100\r\n"))
    relay.deliver(message(subject="Re: Bilan sanguin", body="trois\r\n", message_id="<t3@test-operator.mssante.fr>",
                          extra="Date: Mon, 23 Nov 2026 11:00:00 +0100\r\n"
                                "References: <t1@test-operator.mssante.fr>\r\n"))


def test_sort_and_esort(relay: RunningDaemon) -> None:
    _deliver_thread(relay)
    c = relay.imap()
    caps = c.capability()[1][0]
    for cap in (b"SORT", b"SORT=DISPLAY", b"THREAD=REFERENCES", b"THREAD=ORDEREDSUBJECT", b"ESORT"):
        assert cap in caps.split()
    c.select("INBOX")
    typ, data = c.sort("(SUBJECT)", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"1 3 2"]
    assert c.sort("(REVERSE DATE)", "UTF-8", "ALL")[1] == [b"3 1 2"]
    assert c.uid("SORT", "(DATE)", "UTF-8", "ALL")[1] == [b"2 1 3"]
    assert c.sort("(SUBJECT)", "UTF-8", "BODY", "trois")[1] == [b"3"]  # the search narrows
    lines, tagged = raw(c, "SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL")
    assert tagged.startswith(b"OK")
    assert re.fullmatch(rb'\* ESEARCH \(TAG "Z\d+"\) MIN 2 MAX 3 ALL 2,1,3 COUNT 3', lines[0])
    # bad input: BAD for the syntax, NO [BADCHARSET] for the charset (RFC 5256 §3)
    assert raw(c, "SORT (FOO) UTF-8 ALL")[1].startswith(b"BAD")
    assert raw(c, "SORT (REVERSE) UTF-8 ALL")[1].startswith(b"BAD")
    assert raw(c, "SORT (DATE) KOI8-R ALL")[1].startswith(b"NO [BADCHARSET")
    c.logout()


def test_thread_references_and_orderedsubject(relay: RunningDaemon) -> None:
    _deliver_thread(relay)
    c = relay.imap()
    c.select("INBOX")
    assert c.thread("REFERENCES", "UTF-8", "ALL")[1] == [b"(2)(1 3)"]
    assert c.uid("THREAD", "REFERENCES", "UTF-8", "ALL")[1] == [b"(2)(1 3)"]
    assert c.thread("ORDEREDSUBJECT", "UTF-8", "ALL")[1] == [b"(2)(1 3)"]
    assert raw(c, "THREAD REFERENCES UTF-8 SUBJECT nothing-matches")[0] == [b"* THREAD"]
    assert raw(c, "THREAD BOGUS UTF-8 ALL")[1].startswith(b"BAD")
    # an expunged message leaves the threads (RFC 5256 §3: only the messages that exist)
    c.store("1", "+FLAGS", "(\\Deleted)")
    c.expunge()
    assert c.thread("REFERENCES", "UTF-8", "ALL")[1] == [b"(1)(2)"]
    c.logout()
