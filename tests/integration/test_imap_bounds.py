"""Issue 10 §2-3: every IMAP command bounded in time and memory.

APPEND literals are sealed into the spool as they arrive and count against per-account
and global bounds on bytes in flight (a refusal is a tagged NO [LIMIT], before "+" for
a synchronizing literal, after reading and dropping the octets for LITERAL+); a
command's literals must arrive within imap.literal_timeout; a command must finish
within imap.command_timeout. Real clients on loopback: imaplib and raw TLS sockets.
"""
from __future__ import annotations

import re
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from policy.recipients import MailboxState
from tests.integration.conftest import INS_ACTIVE, PASSWORD, PASSWORD_HASH, RunningDaemon, message
from tests.integration.test_imap_login import _tls_lines, _until_tagged

OTHER = "180017512300130"  # a second active patient, for the global bound


def _start(instance: Path, **keys: object) -> RunningDaemon:
    cfg = instance / "relay.toml"
    text = cfg.read_text()
    for key, value in keys.items():  # in the generated file's [imap] section
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
        if n == 0:
            text = text.replace("[imap]\n", f"[imap]\n{key} = {value}\n", 1)
    cfg.write_text(text)
    return RunningDaemon(cfg).start()


@pytest.fixture
def bounded(instance: Path, request: pytest.FixtureRequest) -> Iterator[RunningDaemon]:
    rd = _start(instance, **request.param)
    try:
        yield rd
    finally:
        rd.stop()


def _login(relay: RunningDaemon, ins: str = INS_ACTIVE):  # type: ignore[no-untyped-def]
    tls, f = _tls_lines(relay)
    tls.sendall(f'a LOGIN {ins} "{PASSWORD}"\r\n'.encode())
    assert _until_tagged(f, b"a")[-1].startswith(b"a OK")
    return tls, f


def _big(size: int, subject: str = "Compte rendu") -> bytes:
    head = message(subject=subject, body="")
    line = b"Bonjour, voici la suite du compte rendu de consultation.\r\n"
    return head + line * ((size - len(head)) // len(line))


def _inbox(relay: RunningDaemon, ins: str = INS_ACTIVE) -> list[bytes]:
    return relay.inbox(ins)


# ---- spooled APPEND ---------------------------------------------------------------------

def test_big_append_is_spooled_and_stored_whole(relay: RunningDaemon) -> None:
    raw = _big(3_000_000)
    c = relay.imap()
    typ, data = c.append("INBOX", "(\\Seen)", None, raw)  # synchronizing literal
    assert typ == "OK" and b"APPENDUID" in data[0]
    c.logout()
    assert _inbox(relay) == [raw]
    spool = relay.base / "spool"
    assert spool.is_dir() and (spool.stat().st_mode & 0o777) == 0o700
    assert list(spool.iterdir()) == []  # anonymous files, gone with their command


def test_big_append_with_literal_plus_is_stored_whole(relay: RunningDaemon) -> None:
    raw = _big(1_000_000, subject="Literal plus")
    tls, f = _login(relay)
    tls.sendall(b"b APPEND INBOX {%d+}\r\n" % len(raw) + raw + b"\r\n")
    assert _until_tagged(f, b"b")[-1].startswith(b"b OK [APPENDUID")
    tls.close()
    assert _inbox(relay) == [raw]


def test_nul_in_a_spooled_literal_is_bad_and_nothing_is_stored(relay: RunningDaemon) -> None:
    raw = _big(200_000)
    raw = raw[:1000] + b"\x00" + raw[1001:]
    tls, f = _login(relay)
    tls.sendall(b"b APPEND INBOX {%d+}\r\n" % len(raw) + raw + b"\r\n")
    assert _until_tagged(f, b"b")[-1].startswith(b"b BAD")
    tls.sendall(b"c NOOP\r\n")
    assert _until_tagged(f, b"c")[-1].startswith(b"c OK")
    tls.close()
    assert _inbox(relay) == []


def test_spooled_literal_is_refused_as_a_mailbox_name(relay: RunningDaemon) -> None:
    tls, f = _login(relay)
    name = b"x" * 70_000  # over the spool threshold, where APPEND expects a mailbox
    tls.sendall(b"b APPEND {%d+}\r\n" % len(name) + name + b" {3+}\r\nabc\r\n")
    assert _until_tagged(f, b"b")[-1].startswith(b"b BAD")
    tls.sendall(b"c NOOP\r\n")
    assert _until_tagged(f, b"c")[-1].startswith(b"c OK")
    tls.close()


def test_each_large_message_of_a_multiappend_is_spooled(relay: RunningDaemon) -> None:
    """Every large message of a MULTIAPPEND (RFC 3502) is sealed into a spool of its
    own: imaptest's stress sent two messages of 200 KB in one APPEND with LITERAL+, and
    the old code, which spooled only the first, ended the session ("literal too large")."""
    raw1, raw2 = _big(100_000, "Premier"), _big(200_000, "Second")
    tls, f = _login(relay)
    tls.sendall(b"b APPEND INBOX {%d+}\r\n" % len(raw1) + raw1 + b" (\\Seen) {%d+}\r\n" % len(raw2) + raw2 + b"\r\n")
    assert re.match(rb"b OK \[APPENDUID \d+ 1:2\]", _until_tagged(f, b"b")[-1])
    tls.close()
    assert _inbox(relay) == [raw1, raw2]
    assert list((relay.base / "spool").iterdir()) == []


def test_a_multiappend_beyond_the_spools_holds_the_rest_in_memory(relay: RunningDaemon) -> None:
    """At most 16 spool files (descriptors) per command: a 17th large message is held
    in memory within the line budget (2 x imap.max_line), like any other literal."""
    raws = [_big(70_000, f"Message {i}") for i in range(17)]
    tls, f = _login(relay)
    tls.sendall(b"b APPEND Drafts" + b"".join(b" {%d+}\r\n" % len(r) + r for r in raws) + b"\r\n")
    assert re.match(rb"b OK \[APPENDUID \d+ 1:17\]", _until_tagged(f, b"b")[-1])
    tls.close()
    c = relay.imap()
    c.select("Drafts")
    typ, data = c.fetch("1:*", "(BODY.PEEK[])")
    assert [d[1] for d in data if isinstance(d, tuple)] == raws
    c.logout()


@pytest.mark.parametrize("bounded", [{"max_literal": 300_000}], indirect=True)
def test_a_multiappend_stays_within_one_command_bound(bounded: RunningDaemon) -> None:
    """However many messages, one command carries at most imap.max_line +
    imap.max_literal octets: past it, BAD [TOOBIG] before "+", and the session goes on."""
    raw = _big(200_000)
    tls, f = _login(bounded)
    tls.sendall(b"b APPEND INBOX {%d}\r\n" % len(raw))
    assert f.readline().startswith(b"+")
    tls.sendall(raw + b" {%d}\r\n" % len(raw))  # 400,000 octets in all: over 65,536 + 300,000
    assert f.readline().startswith(b"b BAD [TOOBIG]")
    tls.sendall(b"c NOOP\r\n")
    assert _until_tagged(f, b"c")[-1].startswith(b"c OK")
    tls.close()
    assert _inbox(bounded) == []


def test_literals_of_other_commands_share_a_line_budget(relay: RunningDaemon) -> None:
    """SEARCH strings are of a command line's order: five 30,000-octet literals (150 KB
    held in memory for one command) are more than a session may hold."""
    tls, f = _login(relay)
    tls.sendall(b"a2 SELECT INBOX\r\n")
    _until_tagged(f, b"a2")
    tls.sendall(b"b SEARCH TEXT {30000}\r\n")
    for _ in range(4):
        assert f.readline().startswith(b"+")
        tls.sendall(b"a" * 30000 + b" TEXT {30000}\r\n")
    reply = f.readline()
    assert reply.startswith(b"b BAD [TOOBIG]"), reply
    tls.sendall(b"c NOOP\r\n")
    assert _until_tagged(f, b"c")[-1].startswith(b"c OK")
    tls.close()


# ---- bytes in flight ----------------------------------------------------------------------

@pytest.mark.parametrize("bounded", [{"max_append_bytes_per_account": 1_000_000}], indirect=True)
def test_append_beyond_the_account_bound_is_refused_before_continuation(bounded: RunningDaemon) -> None:
    relay = bounded
    first = _big(600_000, subject="Premier")
    second = _big(600_000, subject="Second")
    t1, f1 = _login(relay)
    t2, f2 = _login(relay)
    # session 1 is in the middle of its literal: its 600,000 bytes are in flight
    t1.sendall(b"b APPEND INBOX {%d}\r\n" % len(first))
    assert f1.readline().startswith(b"+")
    t1.sendall(first[:300_000])
    # session 2, same account: refused instead of "+" (RFC 7888 §3, RFC 9051 §7.5)
    t2.sendall(b"b APPEND INBOX {%d}\r\n" % len(second))
    reply = f2.readline()
    assert reply.startswith(b"b NO [LIMIT]"), reply
    assert reply.isascii() and b"Traceback" not in reply
    t2.sendall(b"c NOOP\r\n")  # the session goes on; no literal was expected
    assert _until_tagged(f2, b"c")[-1].startswith(b"c OK")
    t1.sendall(first[300_000:] + b"\r\n")
    assert _until_tagged(f1, b"b")[-1].startswith(b"b OK [APPENDUID")
    # the bytes are given back once the command is answered
    t2.sendall(b"d APPEND INBOX {%d}\r\n" % len(second))
    assert f2.readline().startswith(b"+")
    t2.sendall(second + b"\r\n")
    assert _until_tagged(f2, b"d")[-1].startswith(b"d OK [APPENDUID")
    t1.close()
    t2.close()
    assert _inbox(relay) == [first, second]


@pytest.mark.parametrize("bounded", [{"max_append_bytes_per_account": 1_000_000}], indirect=True)
def test_literal_plus_beyond_the_bound_is_read_dropped_and_refused(bounded: RunningDaemon) -> None:
    relay = bounded
    kept = _big(600_000, subject="Garde")
    dropped = _big(600_000, subject="Refuse")
    t1, f1 = _login(relay)
    t2, f2 = _login(relay)
    t1.sendall(b"b APPEND INBOX {%d}\r\n" % len(kept))
    assert f1.readline().startswith(b"+")
    t1.sendall(kept[:1000])
    # RFC 7888: a LITERAL+ client sends its octets at once; they are read and dropped
    t2.sendall(b"b APPEND INBOX (\\Seen) {%d+}\r\n" % len(dropped) + dropped + b"\r\nc NOOP\r\n")
    lines = _until_tagged(f2, b"b")
    assert lines[-1].startswith(b"b NO [LIMIT]"), lines
    assert _until_tagged(f2, b"c")[-1].startswith(b"c OK")  # in step with the client again
    t1.sendall(kept[1000:] + b"\r\n")
    assert _until_tagged(f1, b"b")[-1].startswith(b"b OK")
    t1.close()
    t2.close()
    assert _inbox(relay) == [kept]


@pytest.mark.parametrize("bounded", [{"max_append_bytes_in_flight": 1_000_000}], indirect=True)
def test_append_beyond_the_global_bound_is_refused_for_another_account(bounded: RunningDaemon) -> None:
    relay = bounded
    relay.call(relay.store.create_mailbox(OTHER, MailboxState.ACTIVE, PASSWORD_HASH))
    relay.deliver(message(subject="Deja la"), ins=OTHER)
    before = _inbox(relay, OTHER)
    mine = _big(700_000)
    t1, f1 = _login(relay)
    t2, f2 = _login(relay, OTHER)
    t1.sendall(b"b APPEND INBOX {%d}\r\n" % len(mine))
    assert f1.readline().startswith(b"+")
    t1.sendall(mine[:100])
    t2.sendall(b"b APPEND INBOX {400000}\r\n")
    assert f2.readline().startswith(b"b NO [LIMIT]")
    other = _big(200_000, subject="Petit")
    t2.sendall(b"c APPEND INBOX {%d}\r\n" % len(other))  # what fits under the bound is taken
    assert f2.readline().startswith(b"+")
    t2.sendall(other + b"\r\n")
    assert _until_tagged(f2, b"c")[-1].startswith(b"c OK")
    t1.sendall(mine[100:] + b"\r\n")
    assert _until_tagged(f1, b"b")[-1].startswith(b"b OK")
    t1.close()
    t2.close()
    assert _inbox(relay, OTHER) == before + [other]  # intact, and only what was accepted
    assert _inbox(relay) == [mine]


# ---- literal deadline -----------------------------------------------------------------------

@pytest.mark.parametrize("bounded", [{"literal_timeout": 2, "max_append_bytes_per_account": 300_000}],
                         indirect=True)
def test_slow_literal_gets_no_and_bye_and_frees_its_bytes(bounded: RunningDaemon) -> None:
    relay = bounded
    raw = _big(200_000)
    tls, f = _login(relay)
    tls.sendall(b"b APPEND INBOX {%d}\r\n" % len(raw))
    assert f.readline().startswith(b"+")
    started = time.monotonic()
    got: list[bytes] = []

    def read() -> None:
        while line := f.readline():
            got.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # a byte every 0.2 s: well within the idle timeout, never within the literal's deadline
    for i in range(100):
        if not reader.is_alive():
            break
        try:
            tls.sendall(raw[i:i + 1])
        except (OSError, ssl.SSLError):
            break
        time.sleep(0.2)
    reader.join(30)
    lines = got
    elapsed = time.monotonic() - started
    assert any(x.startswith(b"b NO [LIMIT]") for x in lines), lines
    assert any(x.startswith(b"* BYE") for x in lines), lines
    assert elapsed < 15
    tls.close()
    # the slot and the bytes are free: a full APPEND of the same size goes through
    c = relay.imap()
    assert c.append("INBOX", None, None, raw)[0] == "OK"
    c.logout()
    assert _inbox(relay) == [raw]


# ---- command deadline ------------------------------------------------------------------------

@pytest.mark.parametrize("bounded", [{"command_timeout": 1}], indirect=True)
def test_command_past_its_deadline_gets_no_limit_and_the_session_goes_on(bounded: RunningDaemon) -> None:
    relay = bounded
    for i in range(12):
        relay.call(relay.store.deliver([relay.call(relay.store.require_mailbox(INS_ACTIVE))],
                                       _big(2_000_000, subject=f"Gros {i}")))
    tls, f = _login(relay)
    tls.sendall(b"b EXAMINE INBOX\r\n")
    _until_tagged(f, b"b")
    # 24 MB of bodies to a client that does not read: the command waits on the socket
    tls.sendall(b"c FETCH 1:* BODY.PEEK[]\r\n")
    time.sleep(4)
    tagged = None
    while tagged is None:
        line = f.readline()
        assert line
        if line.startswith(b"* ") and line.rstrip().endswith(b"}"):
            size = int(line.rstrip()[line.rindex(b"{") + 1:-1])
            f.read(size)
        elif line.startswith(b"c "):
            tagged = line
    assert tagged.startswith(b"c NO [LIMIT]"), tagged
    assert tagged.isascii() and b"Traceback" not in tagged
    tls.sendall(b"d FETCH 1 (FLAGS)\r\n")
    assert _until_tagged(f, b"d")[-1].startswith(b"d OK")
    tls.close()


def test_commands_within_the_deadline_are_not_affected(relay: RunningDaemon) -> None:
    relay.deliver(message())
    c = relay.imap()
    c.select("INBOX")
    assert c.fetch("1", "(BODY.PEEK[])")[0] == "OK"
    assert c.search(None, "TEXT", "compte")[0] == "OK"
    c.logout()
