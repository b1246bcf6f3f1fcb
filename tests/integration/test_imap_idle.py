"""IMAP IDLE (RFC 2177): sessions see deliveries by the MX and other sessions' changes
within a second (aioimaplib as the idling client, imaplib and smtplib as the others)."""
from __future__ import annotations

import asyncio
import ssl
import threading
import time

from aioimaplib import IMAP4_SSL

from tests.integration.conftest import INS_ACTIVE, PASSWORD, RunningDaemon, message


async def _idle_until(client: IMAP4_SSL, predicate, timeout: float = 5.0) -> list[bytes]:  # type: ignore[no-untyped-def]
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pushed = await client.wait_server_push(timeout=max(deadline - time.monotonic(), 0.1))
        except asyncio.TimeoutError:
            break
        lines = pushed if isinstance(pushed, list) else [pushed]
        seen += [x if isinstance(x, bytes) else str(x).encode() for x in lines]
        if predicate(seen):
            return seen
    return seen


def test_two_idle_sessions_see_a_delivery_and_a_flag_change(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="premier"))
    ctx = ssl.create_default_context(cafile=str(relay.pki("ca.pem")))

    async def scenario() -> tuple[list[list[bytes]], float, list[bytes]]:
        clients = []
        for _ in range(2):
            c = IMAP4_SSL("127.0.0.1", relay.imap_ports[1], ssl_context=ctx, timeout=10)
            await c.wait_hello_from_server()
            assert (await c.login(INS_ACTIVE, PASSWORD)).result == "OK"
            assert (await c.select("INBOX")).result == "OK"
            clients.append(c)
        idles = [await c.idle_start(timeout=30) for c in clients]  # consumes "+ idling"
        sent = time.monotonic()
        await asyncio.to_thread(relay.deliver, message(subject="second"))
        pushes = await asyncio.gather(*(_idle_until(c, lambda s: any(b"EXISTS" in x for x in s))
                                        for c in clients))
        delay = time.monotonic() - sent
        # another session (imaplib, in a thread) flags the new message
        def flag() -> None:
            other = relay.imap()
            other.select("INBOX")
            other.store("2", "+FLAGS", "\\Flagged")
            other.logout()
        await asyncio.to_thread(flag)
        flags = await _idle_until(clients[0], lambda s: any(b"FETCH" in x and b"Flagged" in x for x in s))
        for c, idle in zip(clients, idles, strict=True):
            c.idle_done()
            await asyncio.wait_for(idle, 10)
            await c.logout()
        return pushes, delay, flags

    pushes, delay, flags = asyncio.run(scenario())
    for p in pushes:
        assert any(b"2 EXISTS" in x for x in p), p
    assert delay < 1.0, delay  # issue 4: woken within one second of the delivery
    assert any(b"2 FETCH" in x and b"\\Flagged" in x for x in flags), flags


def test_idle_ends_with_bye_when_the_daemon_stops(instance) -> None:  # type: ignore[no-untyped-def]
    relay = RunningDaemon(instance / "relay.toml").start()
    c = relay.imap()
    c.select("INBOX")
    c.send(b"a IDLE\r\n")
    assert c.readline().startswith(b"+")
    stopper = threading.Thread(target=relay.stop)
    stopper.start()
    line = c.readline()
    assert line.startswith(b"* BYE"), line
    stopper.join(30)
    assert not relay.thread.is_alive()


def test_another_sessions_expunge_reaches_a_selected_session(relay: RunningDaemon) -> None:
    for i in range(3):
        relay.deliver(message(subject=f"m{i}"))
    a, b = relay.imap(), relay.imap()
    a.select("INBOX")
    b.select("INBOX")
    b.store("2", "+FLAGS", "\\Deleted")
    b.expunge()
    # FETCH must not announce the expunge (RFC 3501 §7.4.1): numbers stay as A knows them
    typ, data = a.fetch("3", "(UID)")
    assert typ == "OK" and b"UID 3" in data[0] and "EXPUNGE" not in a.untagged_responses
    typ, _ = a.noop()
    assert a.untagged_responses.pop("EXPUNGE") == [b"2"]
    typ, data = a.fetch("2", "(UID)")
    assert b"UID 3" in data[0]  # former number 3 is now 2
    a.logout()
    b.logout()


def test_a_session_whose_folder_another_session_deletes_is_ended(relay: RunningDaemon) -> None:
    import imaplib

    import pytest
    a, b = relay.imap(), relay.imap()
    assert b.create("Temporaire")[0] == "OK"
    relay.call(relay.store.deliver([relay.call(relay.store.get_mailbox(INS_ACTIVE))], message(),
                                   folder="Temporaire"))
    assert a.select("Temporaire")[1] == [b"1"]
    assert b.delete("Temporaire")[0] == "OK"
    assert b.create("Temporaire")[0] == "OK"  # same name, new folder: old UIDs mean nothing
    with pytest.raises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)):
        a.fetch("1", "(FLAGS)")
    b.logout()
