"""IMAP compliance defects imaptest found (issue 12, item 1), each against a running
daemon with imaplib: \\Recent, UIDVALIDITY of a re-created folder, subscriptions apart
from CREATE, LIST-EXTENDED, quoted-printable BINARY, SEARCH of addresses with comments,
invalid modified UTF-7 names, FLAGS for new keywords, nothing after LOGOUT's BYE, and
imaplib's 8-bit SEARCH atoms."""
from __future__ import annotations

import imaplib
import re
import socket
import ssl

from tests.integration.conftest import INS_ACTIVE, PASSWORD, RunningDaemon, message


def _append(c: imaplib.IMAP4, raw: bytes, folder: str = "INBOX") -> None:
    typ, _ = c.append(folder, None, None, raw)
    assert typ == "OK"


def _untagged(c: imaplib.IMAP4, name: str) -> list[bytes]:
    return [x for x in c.untagged_responses.pop(name, []) if x is not None]


def _cmd(c: imaplib.IMAP4, *args: str) -> tuple[str, list[bytes]]:
    """A command sent as is; its tagged status (imaplib raises on BAD: caught)."""
    try:
        return c._simple_command(*args)  # type: ignore[attr-defined,no-any-return]
    except c.error as e:
        assert " BAD " in str(e), e
        return "BAD", [str(e).encode()]


def _lines(c: imaplib.IMAP4, verb: str, *args: str) -> list[bytes]:
    """The untagged responses of verb after a command sent as is."""
    typ, _ = _cmd(c, verb, *args)
    assert typ == "OK", (verb, args)
    return _untagged(c, verb)


def test_recent_goes_to_the_first_session_that_selects(relay: RunningDaemon) -> None:
    """RFC 3501 §2.3.2 with Dovecot's semantics (imaptest "select", "copy",
    "search-flags"): EXAMINE shows \\Recent without taking it, SELECT takes it, a
    second session gets none, a new message goes to the session told first."""
    writer = relay.imap()
    _append(writer, message(subject="un"))
    _append(writer, message(subject="deux"))
    writer.logout()
    a, b, c = relay.imap(), relay.imap(), relay.imap()
    typ, _ = a.select("INBOX", readonly=True)
    assert typ == "OK" and _untagged(a, "RECENT") == [b"2"]
    typ, data = c.status("INBOX", "(RECENT MESSAGES)")
    assert typ == "OK" and b"RECENT 2" in data[0]
    typ, _ = a.select("INBOX")
    assert typ == "OK" and _untagged(a, "RECENT") == [b"2"]
    typ, data = a.fetch("1:2", "(FLAGS)")
    assert all(b"\\Recent" in line for line in data), data
    assert a.search(None, "RECENT")[1] == [b"1 2"]
    assert a.search(None, "NEW")[1] == [b"1 2"]
    assert a.search(None, "OLD")[1] == [b""]
    typ, data = c.status("INBOX", "(RECENT)")
    assert b"RECENT 0" in data[0]  # a's now
    typ, _ = b.select("INBOX")
    assert typ == "OK" and _untagged(b, "RECENT") == [b"0"]
    assert b.search(None, "OLD")[1] == [b"1 2"]
    # a third message, while both have INBOX selected: the first told gets it
    _append(c, message(subject="trois"))
    assert a.noop()[0] == "OK"
    assert _untagged(a, "EXISTS")[-1] == b"3" and _untagged(a, "RECENT") == [b"3"]
    assert b.noop()[0] == "OK"
    assert _untagged(b, "EXISTS")[-1] == b"3" and _untagged(b, "RECENT") == [b"0"]
    typ, data = a.store("3", "+FLAGS", "(\\Seen)")
    assert b"\\Recent" in data[0] and b"\\Seen" in data[0]
    for x in (a, b, c):
        x.logout()


def test_recreated_folder_gets_a_new_uidvalidity(relay: RunningDaemon) -> None:
    """RFC 3501 §2.3.1.1 (imaptest "uidvalidity"): deleted and re-created within the
    same second, a folder must not get its old UIDVALIDITY back."""
    c = relay.imap()
    assert c.create("Analyses")[0] == "OK"
    _append(c, message(), "Analyses")
    before = c.status("Analyses", "(UIDVALIDITY UIDNEXT)")[1][0]
    assert c.delete("Analyses")[0] == "OK"
    assert c.create("Analyses")[0] == "OK"
    _append(c, message(), "Analyses")
    after = c.status("Analyses", "(UIDVALIDITY UIDNEXT)")[1][0]
    v1 = re.search(rb"UIDVALIDITY (\d+)", before)
    v2 = re.search(rb"UIDVALIDITY (\d+)", after)
    assert v1 and v2 and v1.group(1) != v2.group(1)
    c.logout()


def test_subscriptions_do_not_follow_create_and_outlive_delete(relay: RunningDaemon) -> None:
    """RFC 3501 §6.3.6, §6.3.9 (imaptest "subscribe"): CREATE does not subscribe; a
    subscribed child under an unsubscribed parent shows the parent \\Noselect in LSUB
    "%"; a deleted folder's subscription stays."""
    c = relay.imap()
    for name in ("Projets/Un", "Projets/Deux", "Autre"):
        assert c.create(name)[0] == "OK"
    assert _lines(c, "LSUB", '""', '"Projets/*"') == []
    assert c.subscribe("Projets/Un")[0] == "OK"
    top = _lines(c, "LSUB", '""', "%")
    assert b'(\\Noselect) "/" Projets' in top and any(x.endswith(b'"/" INBOX') for x in top)
    assert not any(b"Autre" in x or b"Projets/" in x for x in top)
    assert _lines(c, "LSUB", '""', '"Projets/*"') == [b'(\\HasNoChildren) "/" Projets/Un']
    assert c.delete("Projets/Un")[0] == "OK"
    assert _lines(c, "LSUB", '""', '"Projets/*"') == [b'(\\Noselect) "/" Projets/Un']
    assert c.unsubscribe("Projets/Un")[0] == "OK"
    assert _lines(c, "LSUB", '""', '"Projets/*"') == []
    c.logout()


def test_list_extended_subscribed_nonexistent_and_childinfo(relay: RunningDaemon) -> None:
    """RFC 5258 (imaptest "listext"): BAD for an invalid selection, a subscribed deleted
    folder as \\Subscribed \\NonExistent, CHILDINFO for a parent of a subscribed child."""
    c = relay.imap()
    for name in ("Suivi/Bilans", "Suivi/Vieux"):
        assert c.create(name)[0] == "OK"
        assert c.subscribe(name)[0] == "OK"
    assert c.delete("Suivi/Vieux")[0] == "OK"
    for selection in ("(IMAPTEST)", "(RECURSIVEMATCH)", "(RECURSIVEMATCH REMOTE)"):
        assert _cmd(c, "LIST", selection, '""', '""')[0] == "BAD", selection
    assert b'(\\HasChildren) "/" Suivi' in _lines(c, "LIST", "(REMOTE)", '""', "%")
    got = _lines(c, "LIST", "(SUBSCRIBED)", '""', '"Suivi/*"')
    assert got == [b'(\\HasNoChildren \\Subscribed) "/" Suivi/Bilans',
                   b'(\\NonExistent \\Subscribed) "/" Suivi/Vieux']
    got = _lines(c, "LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', "Suivi")
    assert got == [b'(\\HasChildren) "/" Suivi ("CHILDINFO" ("SUBSCRIBED"))']
    # the subscribed children all matched too: no CHILDINFO needed (RFC 5258 §3.5)
    assert c.unsubscribe("Suivi/Vieux")[0] == "OK"
    got = _lines(c, "LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', "(Suivi Suivi/Bilans)")
    assert got == [b'(\\HasNoChildren \\Subscribed) "/" Suivi/Bilans']
    c.logout()


QP_MESSAGE = (b"From: a@b.example\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n--xx\r\n"
              b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
              b"hello  \r\nbar=\r\n\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar\r\n--xx--\r\n")


def test_binary_decodes_quoted_printable_per_rfc2045(relay: RunningDaemon) -> None:
    """RFC 2045 §6.7 (imaptest "fetch-binary-mime-qp"): trailing whitespace goes, and
    "=" then whitespace at a line's end is a soft line break."""
    c = relay.imap()
    _append(c, QP_MESSAGE)
    c.select("INBOX")
    typ, data = c.fetch("1", "(BINARY.PEEK[1] BINARY.SIZE[1])")
    assert typ == "OK"
    expected = b"hello\r\nbar\r\nfoo\t \tb\r\nfoo bar"
    assert data[0][1] == expected, data  # type: ignore[index]
    assert b"BINARY.SIZE[1] %d" % len(expected) in b"".join(x if isinstance(x, bytes) else b"".join(x)
                                                           for x in data)
    c.logout()


def test_search_addresses_ignores_comments(relay: RunningDaemon) -> None:
    """RFC 5322 §3.4 (imaptest "search-addresses"): a comment inside an address is
    not part of it; a comment after it still matches as text."""
    c = relay.imap()
    _append(c, b"From: <dr.martin (cabinet)@ (paris) exemple.fr>\r\nTo: <x@y.fr>\r\nSubject: a\r\n\r\nun\r\n")
    _append(c, b"From: dr.martin@exemple.fr (Docteur Martin)\r\nTo: <x@y.fr>\r\nSubject: b\r\n\r\ndeux\r\n")
    _append(c, b"From: autre@exemple.fr\r\nTo: <x@y.fr>\r\nSubject: c\r\n\r\ntrois\r\n")
    c.select("INBOX")
    assert c.search(None, "FROM", "dr.martin@exemple.fr")[1] == [b"1 2"]
    assert c.search(None, "FROM", '"Docteur Martin"')[1] == [b"2"]
    c.logout()


def test_invalid_modified_utf7_name_gets_no_not_bad(relay: RunningDaemon) -> None:
    """RFC 3501 §5.1.3 (imaptest "atoms"): a well-formed command whose name is not
    valid modified UTF-7 gets NO; LIST with such a pattern lists nothing, OK."""
    c = relay.imap()
    typ, data = _cmd(c, "SELECT", "a&b'c")
    assert typ == "NO", data
    typ, data = _cmd(c, "CREATE", "a&b'c")
    assert typ == "NO", data
    assert _lines(c, "LIST", '""', "a&b'c%*") == []
    assert c.noop()[0] == "OK"  # the session goes on
    c.logout()


def test_store_of_a_new_keyword_sends_flags_first(relay: RunningDaemon) -> None:
    """RFC 3501 §7.2.6: the client learns a keyword from FLAGS before a FETCH shows
    it (imaptest: "Keyword used without being in FLAGS"), in this session and in
    another one that has the folder selected."""
    c, other = relay.imap(), relay.imap()
    _append(c, message())
    c.select("INBOX")
    other.select("INBOX")
    assert b"$Important" not in _untagged(c, "FLAGS")[0]
    typ, _ = c.store("1", "+FLAGS", "($Important)")
    assert typ == "OK"
    flags = _untagged(c, "FLAGS")
    assert flags and b"$Important" in flags[-1] and b"\\Seen" in flags[-1]
    assert other.noop()[0] == "OK"
    flags = _untagged(other, "FLAGS")
    assert flags and b"$Important" in flags[-1]
    assert any(b"$Important" in x for x in _untagged(other, "FETCH"))
    # a session that selects later gets the keyword in its first FLAGS
    third = relay.imap()
    third.select("INBOX")
    assert b"$Important" in _untagged(third, "FLAGS")[0]
    for x in (c, other, third):
        x.logout()


def test_logout_reply_carries_no_pending_update(relay: RunningDaemon) -> None:
    """RFC 3501 §6.1.3 (imaptest "logout"): after BYE the server sends only the tagged
    OK: a flag change made meanwhile by another session is not announced. (imaplib
    stops reading at BYE, so the session is read on a raw TLS socket.)"""
    c, other = relay.imap(), relay.imap()
    _append(c, message())
    other.select("INBOX")
    ctx = ssl.create_default_context(cafile=str(relay.pki("ca.pem")))
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", relay.imap_ports[1]), timeout=30),
                         server_hostname="127.0.0.1") as tls:
        f = tls.makefile("rb")
        f.readline()
        tls.sendall(f'a LOGIN {INS_ACTIVE}@patient.mssante.fr "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
        while not f.readline().startswith(b"b OK"):
            pass
        assert other.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
        tls.sendall(b"c LOGOUT\r\n")
        rest = f.read()
    assert rest.startswith(b"* BYE") and rest.rstrip().endswith(b"c OK LOGOUT done"), rest
    assert b"FETCH" not in rest, rest
    c.logout()
    other.logout()


def test_search_accepts_imaplibs_8bit_atom(relay: RunningDaemon) -> None:
    """imaplib sends a non-ASCII SEARCH argument as a bare 8-bit atom
    ("SEARCH CHARSET UTF-8 SUBJECT R\\xc3\\xa9sultats"); Dovecot accepts it, so do we."""
    c = relay.imap()
    _append(c, message(subject="=?utf-8?q?R=C3=A9sultats_d=27analyses?="))
    _append(c, message(subject="Autre"))
    c.select("INBOX")
    typ, data = c.search("UTF-8", b"SUBJECT", "Résultats".encode())  # type: ignore[arg-type]
    assert typ == "OK" and data == [b"1"]
    typ, data = c.uid("SEARCH", "CHARSET", "UTF-8", "HEADER", "SUBJECT", "Résultats".encode())  # type: ignore[arg-type]
    assert typ == "OK" and data == [b"1"]
    c.logout()
