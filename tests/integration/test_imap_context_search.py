"""CONTEXT=SEARCH (RFC 5267 §4) against a real imaplib client: SEARCH RETURN (UPDATE)
tells the changes of its results as ESEARCH ADDTO / REMOVEFROM (the session's own STORE,
another session's, a delivery, an EXPUNGE), CANCELUPDATE ends it, PARTIAL returns a
window of the results."""
from __future__ import annotations

from tests.integration.conftest import RunningDaemon, message
from tests.integration.test_imap_condstore import raw


def _esearch(lines: list[bytes]) -> list[bytes]:
    return [x for x in lines if x.startswith(b"* ESEARCH")]


def test_search_update_follows_flags_deliveries_and_expunges(relay: RunningDaemon) -> None:
    for i in range(5):
        relay.deliver(message(subject=f"cr {i}", body=f"texte {i}\r\n"))
    c = relay.imap()
    assert b" CONTEXT=SEARCH" in raw(c, "CAPABILITY")[0][0]
    raw(c, "SELECT INBOX")
    lines, tagged = raw(c, "SEARCH RETURN (UPDATE) SEEN")
    assert tagged.startswith(b"OK") and _esearch(lines)[0].startswith(b'* ESEARCH (TAG "Z')
    tag = _esearch(lines)[0].split(b'"')[1].decode()
    lines, _ = raw(c, "STORE 1,2,4 +FLAGS (\\Seen)")
    assert _esearch(lines) == [b'* ESEARCH (TAG "%s") ADDTO (0 1:2,4)' % tag.encode()]
    lines, _ = raw(c, "STORE 1 -FLAGS (\\Seen)")
    assert _esearch(lines) == [b'* ESEARCH (TAG "%s") REMOVEFROM (0 1)' % tag.encode()]
    # another session's change, told at this session's next command
    other = relay.imap()
    other.select("INBOX")
    other.store("5", "+FLAGS", "(\\Seen)")
    other.logout()
    lines, _ = raw(c, "NOOP")
    assert _esearch(lines) == [b'* ESEARCH (TAG "%s") ADDTO (0 5)' % tag.encode()]
    # an expunged result: REMOVEFROM with its number, before its EXPUNGE
    raw(c, "STORE 4 +FLAGS.SILENT (\\Deleted)")
    lines, _ = raw(c, "EXPUNGE")
    removal = lines.index(b'* ESEARCH (TAG "%s") REMOVEFROM (0 4)' % tag.encode())
    assert removal < lines.index(b"* 4 EXPUNGE")
    # a delivery already seen (the MX cannot, so another session's APPEND)
    other = relay.imap()
    other.append("INBOX", "(\\Seen)", None, message(subject="lu", body="lu\r\n"))
    other.logout()
    lines, _ = raw(c, "NOOP")
    assert b"* 5 EXISTS" in lines
    assert lines.index(b'* ESEARCH (TAG "%s") ADDTO (0 5)' % tag.encode()) > lines.index(b"* 5 EXISTS")
    # ended: no more updates; an unknown tag is BAD
    assert raw(c, f'CANCELUPDATE "{tag}"')[1].startswith(b"OK")
    lines, _ = raw(c, "STORE 1 +FLAGS (\\Seen)")
    assert not _esearch(lines)
    assert raw(c, f'CANCELUPDATE "{tag}"')[1].startswith(b"BAD")
    c.logout()


def test_uid_search_update_and_content_keys(relay: RunningDaemon) -> None:
    for i in range(3):
        relay.deliver(message(subject=f"s{i}", body=f"texte {i}\r\n"))
    c = relay.imap()
    raw(c, "SELECT INBOX")
    lines, _ = raw(c, "UID SEARCH RETURN (UPDATE ALL) OR SEEN SUBJECT s1")
    tag = _esearch(lines)[0].split(b'"')[1]
    assert _esearch(lines) == [b'* ESEARCH (TAG "%s") UID ALL 2' % tag]
    lines, _ = raw(c, "STORE 1:3 +FLAGS (\\Seen)")
    assert _esearch(lines) == [b'* ESEARCH (TAG "%s") UID ADDTO (0 1,3)' % tag]
    lines, _ = raw(c, "STORE 1:3 -FLAGS (\\Seen)")  # message 2 still matches by its subject
    assert _esearch(lines) == [b'* ESEARCH (TAG "%s") UID REMOVEFROM (0 1,3)' % tag]
    # the view ends them: a new SELECT starts without
    raw(c, "SELECT INBOX")
    lines, _ = raw(c, "STORE 1 +FLAGS (\\Seen)")
    assert not _esearch(lines)
    c.logout()


def test_search_partial(relay: RunningDaemon) -> None:
    for i in range(5):
        relay.deliver(message(subject=f"p{i}", body=f"texte {i}\r\n"))
    c = relay.imap()
    raw(c, "SELECT INBOX")
    lines, _ = raw(c, "SEARCH RETURN (PARTIAL 4:2) ALL")
    assert lines[-1].endswith(b" PARTIAL (2:4 2:4)")
    lines, _ = raw(c, "SEARCH RETURN (PARTIAL 6:6) ALL")
    assert lines[-1].endswith(b" PARTIAL (6:6 NIL)")
    lines, _ = raw(c, "SEARCH RETURN (PARTIAL 2:10) 1:2,4:5")
    assert lines[-1].endswith(b" PARTIAL (2:10 2,4:5)")
    lines, _ = raw(c, "SEARCH RETURN (PARTIAL -1:-2) ALL")  # RFC 9394: from the last result
    assert lines[-1].endswith(b" PARTIAL (-2:-1 4:5)")
    for bad in ("PARTIAL 1", "PARTIAL 1:*", "PARTIAL *:1", "PARTIAL 1:-2", "PARTIAL 1:2 ALL"):
        assert raw(c, f"SEARCH RETURN ({bad}) ALL")[1].startswith(b"BAD"), bad
    c.logout()


def test_search_and_sort_refuse_an_unknown_return_option_alike(relay: RunningDaemon) -> None:
    """SEARCH (RFC 5267 UPDATE, PARTIAL) and ESORT read RETURN with one parser: the same
    refusal, the option quoted back cut alike; SORT takes no UPDATE."""
    relay.deliver(message(subject="r", body="r\r\n"))
    c = relay.imap()
    raw(c, "SELECT INBOX")
    option = "Y" * 60
    search = raw(c, f"SEARCH RETURN ({option}) ALL")[1]
    sort = raw(c, f"SORT RETURN ({option}) (DATE) UTF-8 ALL")[1]
    assert search.startswith(b"BAD") and search == sort
    assert b"Y" * 40 in search and b"Y" * 41 not in search
    assert raw(c, "SORT RETURN (UPDATE) (DATE) UTF-8 ALL")[1].startswith(b"BAD")
    lines, tagged = raw(c, "SORT RETURN (MIN COUNT) (DATE) UTF-8 ALL")
    assert tagged.startswith(b"OK") and lines[-1].endswith(b" MIN 1 COUNT 1")
    c.logout()
