"""Regressions for defects a review found in the IMAP server (each test names it)."""
from __future__ import annotations

import time

from tests.integration.conftest import INS_ACTIVE, PASSWORD, RunningDaemon, message
from tests.integration.test_imap_login import _tls_lines, _until_tagged


def _logged_in(relay: RunningDaemon):  # type: ignore[no-untyped-def]
    tls, f = _tls_lines(relay)
    tls.sendall(f'a LOGIN {INS_ACTIVE} "{PASSWORD}"\r\n'.encode())
    assert _until_tagged(f, b"a")[-1].startswith(b"a OK")
    return tls, f


def test_list_with_many_wildcards_is_answered_at_once(relay: RunningDaemon) -> None:
    tls, f = _logged_in(relay)
    t = time.monotonic()
    tls.sendall(b'b LIST "" "' + b"*" * 200 + b'!"\r\n')
    assert _until_tagged(f, b"b")[-1].startswith(b"b OK")
    assert time.monotonic() - t < 2  # a backtracking matcher took seconds for 40 stars
    tls.close()


def test_big_literal_before_login_gets_a_tagged_refusal(relay: RunningDaemon) -> None:
    tls, f = _tls_lines(relay)
    tls.sendall(b"a LOGIN {26000000}\r\n")
    assert f.readline().startswith(b"a BAD [TOOBIG]")  # the client is not left waiting
    tls.sendall(b"b NOOP\r\n")
    assert _until_tagged(f, b"b")[-1].startswith(b"b OK")
    tls.close()


def test_bad_status_item_in_list_return_is_bad(relay: RunningDaemon) -> None:
    tls, f = _logged_in(relay)
    tls.sendall(b'b LIST "" "*" RETURN (STATUS (BOGUS))\r\n')
    assert _until_tagged(f, b"b")[-1].startswith(b"b BAD")
    tls.sendall(b"c NOOP\r\n")
    assert _until_tagged(f, b"c")[-1].startswith(b"c OK")
    tls.close()


def test_sequence_number_beyond_exists_is_bad(relay: RunningDaemon) -> None:
    relay.deliver(message())
    tls, f = _logged_in(relay)
    tls.sendall(b"b SELECT INBOX\r\n")
    _until_tagged(f, b"b")
    tls.sendall(b"c FETCH 5 FLAGS\r\n")
    assert _until_tagged(f, b"c")[-1].startswith(b"c BAD")
    tls.sendall(b"d UID FETCH 5:4294967295 FLAGS\r\n")  # unknown UIDs are simply ignored
    assert _until_tagged(f, b"d")[-1].startswith(b"d OK")
    tls.close()


def test_reserved_namespace_cannot_be_an_own_folder(relay: RunningDaemon) -> None:
    c = relay.imap()
    assert c.create('"Other Users"')[0] == "NO"
    assert c.create('"other users/x"')[0] == "NO"
    assert c.create("Mine")[0] == "OK"
    assert c.rename("Mine", '"Other Users"')[0] == "NO"
    c.logout()


def test_search_in_text_while_another_session_expunged(relay: RunningDaemon) -> None:
    for i in range(3):
        relay.deliver(message(subject=f"m{i}", body=f"texte {i}\r\n"))
    a, b = relay.imap(), relay.imap()
    a.select("INBOX")
    b.select("INBOX")
    b.store("1", "+FLAGS", "\\Deleted")
    b.expunge()
    typ, data = a.search(None, "BODY", "texte")
    assert typ == "OK" and data == [b"2 3"]  # the expunged one no longer matches
    a.logout()
    b.logout()
