"""IMAP: TLS, LOGIN, AUTHENTICATE PLAIN, throttling, STARTTLS injection (real clients)."""
from __future__ import annotations

import base64
import imaplib
import socket
import ssl

import pytest

from tests.integration.conftest import (INS_ACTIVE, INS_OPPOSED, INS_PENDING, PASSWORD, RunningDaemon)


def _plain(relay: RunningDaemon) -> imaplib.IMAP4:
    return imaplib.IMAP4("127.0.0.1", relay.imap_ports[0], timeout=30)


def test_logindisabled_before_tls_and_login_after_starttls(relay: RunningDaemon) -> None:
    c = _plain(relay)
    assert "LOGINDISABLED" in c.capabilities and "STARTTLS" in c.capabilities
    assert "AUTH=PLAIN" not in c.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        c.login(f"{INS_ACTIVE}@patient.mssante.fr", PASSWORD)
    c.starttls(ssl.create_default_context(cafile=str(relay.pki("ca.pem"))))
    typ, caps = c.capability()
    assert b"AUTH=PLAIN" in caps[0] and b"LOGINDISABLED" not in caps[0]
    assert c.login(INS_ACTIVE, PASSWORD)[0] == "OK"  # bare INS works too
    c.logout()


def test_implicit_tls_login_and_capabilities(relay: RunningDaemon) -> None:
    c = relay.imap(login=False)
    assert "AUTH=PLAIN" in c.capabilities and "STARTTLS" not in c.capabilities
    typ, data = c.login(f"{INS_ACTIVE}@PATIENT.MSSANTE.FR", PASSWORD)
    assert typ == "OK" and b"CAPABILITY" in data[0]
    for cap in ("IMAP4REV2", "IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE", "LITERAL+", "ESEARCH"):
        assert cap in [x.upper() for x in c.capability()[1][0].decode().split()], cap
    c.logout()


def _tls_lines(relay: RunningDaemon) -> tuple[ssl.SSLSocket, "socket.SocketIO"]:  # type: ignore[name-defined]
    raw = socket.create_connection(("127.0.0.1", relay.imap_ports[1]), timeout=30)
    tls = ssl.create_default_context(cafile=str(relay.pki("ca.pem"))).wrap_socket(raw, server_hostname="localhost")
    f = tls.makefile("rb")
    assert f.readline().startswith(b"* OK")
    return tls, f


def _until_tagged(f, tag: bytes) -> list[bytes]:  # type: ignore[no-untyped-def]
    lines = []
    while True:
        line = f.readline()
        assert line, lines
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


def test_authenticate_plain_with_initial_response(relay: RunningDaemon) -> None:
    tls, f = _tls_lines(relay)
    ir = base64.b64encode(f"\0{INS_ACTIVE}\0{PASSWORD}".encode())
    tls.sendall(b"a AUTHENTICATE PLAIN " + ir + b"\r\n")  # RFC 4959 SASL-IR
    assert _until_tagged(f, b"a")[-1].startswith(b"a OK")
    tls.sendall(b"b SELECT INBOX\r\n")
    assert _until_tagged(f, b"b")[-1].startswith(b"b OK [READ-WRITE]")
    tls.close()
    # imaplib's own AUTHENTICATE (no SASL-IR: the server sends "+ " first)
    c = relay.imap(login=False)
    assert c.authenticate("PLAIN", lambda _: f"\0{INS_ACTIVE}\0{PASSWORD}".encode())[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_authenticate_refusals(relay: RunningDaemon) -> None:
    tls, f = _tls_lines(relay)
    tls.sendall(b"a AUTHENTICATE CRAM-MD5\r\n")
    assert _until_tagged(f, b"a")[-1].startswith(b"a NO [CANNOT]")
    tls.sendall(b"b AUTHENTICATE PLAIN bm90IGJhc2U2NA\r\n")  # not three NUL-separated fields
    assert _until_tagged(f, b"b")[-1].startswith(b"b BAD")
    tls.sendall(b"c AUTHENTICATE PLAIN\r\n")
    assert f.readline().startswith(b"+")
    tls.sendall(b"*\r\n")  # the client cancels (RFC 9051 §6.2.2)
    assert _until_tagged(f, b"c")[-1].startswith(b"c BAD")
    tls.close()


@pytest.mark.parametrize("login, password", [
    (f"{INS_ACTIVE}@patient.mssante.fr", "wrong"),
    ("160017512300140@patient.mssante.fr", PASSWORD),   # unknown
    (f"{INS_ACTIVE}@example.org", PASSWORD),              # another domain
])
def test_bad_credentials(relay: RunningDaemon, login: str, password: str) -> None:
    c = relay.imap(login=False)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login(login, password)
    c.shutdown()


@pytest.mark.parametrize("ins, code", [(INS_PENDING, "CONTACTADMIN"), (INS_OPPOSED, "CONTACTADMIN")])
def test_inactive_mailboxes_cannot_log_in(relay: RunningDaemon, ins: str, code: str) -> None:
    c = relay.imap(login=False)
    with pytest.raises(imaplib.IMAP4.error, match=code):
        c.login(ins, PASSWORD)
    c.shutdown()


def test_throttled_after_repeated_failures(relay: RunningDaemon) -> None:
    assert relay.daemon.imap is not None
    relay.daemon.imap.auth.failure_delay = 0  # keep the test fast; the count is what matters
    c = relay.imap(login=False)
    for _ in range(5):
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            c.login(INS_ACTIVE, "guess")
    # now this address must wait, even with the right password (RFC 5530 UNAVAILABLE)...
    with pytest.raises(imaplib.IMAP4.error, match=r"UNAVAILABLE\] .*retry in 1 s"):
        c.login(INS_ACTIVE, PASSWORD)
    c.shutdown()
    # ...but the patient from another address is not concerned (tests/integration/test_auth_throttle.py)
    other = socket.create_connection(("127.0.0.1", relay.imap_ports[1]), timeout=30, source_address=("127.0.0.9", 0))
    tls = ssl.create_default_context(cafile=str(relay.pki("ca.pem"))).wrap_socket(other, server_hostname="127.0.0.1")
    f = tls.makefile("rb")
    assert f.readline().startswith(b"* OK")
    tls.sendall(f'a LOGIN {INS_ACTIVE} "{PASSWORD}"\r\n'.encode())
    assert _until_tagged(f, b"a")[-1].startswith(b"a OK")
    tls.close()


def test_starttls_discards_pipelined_plaintext(relay: RunningDaemon) -> None:
    raw = socket.create_connection(("127.0.0.1", relay.imap_ports[0]), timeout=30)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"* OK")
    raw.sendall(b"a STARTTLS\r\nb CAPABILITY\r\n")
    assert f.readline().startswith(b"a OK")
    tls = ssl.create_default_context(cafile=str(relay.pki("ca.pem"))).wrap_socket(raw, server_hostname="localhost")
    tf = tls.makefile("rb")
    tls.sendall(b"c NOOP\r\n")
    line = tf.readline()
    assert line.startswith(b"c OK"), line  # "b CAPABILITY" was never executed
    tls.close()


def test_malformed_commands_get_bad_and_the_session_goes_on(relay: RunningDaemon) -> None:
    tls, f = _tls_lines(relay)
    tls.sendall(f"a LOGIN {INS_ACTIVE} \"{PASSWORD}\"\r\n".encode())
    assert _until_tagged(f, b"a")[-1].startswith(b"a OK")
    for i, cmd in enumerate([b"FETCH", b"SELECT", b"FROB 1 2", b"UID FROB", b"SELECT \"unterminated",
                             b"FETCH 1 (FLAGS", b"STORE 1 +FLAGS (\\Recent)"]):
        tag = b"t%d" % i
        tls.sendall(tag + b" " + cmd + b"\r\n")
        assert _until_tagged(f, tag)[-1].startswith(tag + b" BAD"), cmd
    tls.sendall(b"z NOOP\r\n")
    assert _until_tagged(f, b"z")[-1].startswith(b"z OK")
    tls.close()


def test_overlong_line_ends_the_session(relay: RunningDaemon) -> None:
    tls, f = _tls_lines(relay)
    tls.sendall(b"a NOOP " + b"x" * (relay.config.imap_max_line + 10) + b"\r\n")
    assert f.readline().startswith(b"* BYE")
    tls.close()
