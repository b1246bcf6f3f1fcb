"""Issue 10 §9: an outbound attempt is settled at the final 250 of DATA, before QUIT
(RFC 5321 §4.1.1.10), so a kill during QUIT's round trip cannot send it twice.

The receiving peers are aiosmtpd servers on loopback that hold QUIT unanswered (until
released) or drop the connection at QUIT."""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from relay.delivery.client import Outcome, attempt
from relay.delivery.routing import Hop
from tests.integration.conftest import SENDER, RunningDaemon
from tests.integration.test_conversations import PATIENT, ProHandler, pro_mx, pro_writes, reply
from tests.ports import free_port


class QuitHolder(ProHandler):
    """A peer that takes the message, then never answers QUIT until `release`; it
    records whether the client gave up on QUIT (closed the connection) first."""

    def __init__(self, drop: bool = False) -> None:
        super().__init__()
        self.drop = drop
        self.quit_seen = threading.Event()
        self.client_closed = threading.Event()
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quit_seen.set()
        if self.drop:
            server.transport.close()  # the connection drops at QUIT, without a reply
            return "221 Bye"
        self._loop = asyncio.get_running_loop()
        self._release = asyncio.Event()
        try:
            await self._release.wait()
        except asyncio.CancelledError:  # aiosmtpd cancels the handler when the client closes
            self.client_closed.set()
            raise
        return "221 Bye"

    def release(self) -> None:
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)


def wait_for(predicate: Any, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_attempt_settles_before_quit_is_sent() -> None:
    """The client awaits `settle` with the 250 while the server has not yet seen QUIT."""
    handler = QuitHolder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    seen_at_settle: list[tuple[Outcome, bool]] = []

    async def settle(outcome: Outcome) -> None:
        seen_at_settle.append((outcome, handler.quit_seen.is_set()))

    try:
        raw = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\nbody\r\n"
        outcome = asyncio.run(attempt([Hop("127.0.0.1", port, "127.0.0.1")], "a@example.org", "b@example.org",
                                      raw, None, "relay.test", timeout=0.5, settle=settle))
    finally:
        handler.release()
        controller.stop()
    assert outcome.delivered and outcome.code == 250
    assert [(o.code, quit_seen) for o, quit_seen in seen_at_settle] == [(250, False)]
    assert len(handler.received) == 1


@pytest.fixture
def holder_world(instance: Path, request: pytest.FixtureRequest) -> Iterator[tuple[RunningDaemon, QuitHolder]]:
    port = free_port()
    config = instance / "relay.toml"
    # a QUIT reply timeout far beyond the test's patience: only an early settle passes
    config.write_text(config.read_text().replace('"127.0.0.1:2626"', f'"127.0.0.1:{port}"')
                      .replace("timeout = 60", "timeout = 120"))
    handler = QuitHolder(drop=request.param)
    controller = pro_mx(instance / "pki", port, handler)
    rd = RunningDaemon(config).start()
    try:
        yield rd, handler
    finally:
        handler.release()
        rd.stop()
        controller.stop()


@pytest.mark.parametrize("holder_world", [False, True], ids=["quit_held", "quit_dropped"], indirect=True)
def test_entry_is_settled_as_delivered_whatever_quit_does(holder_world: tuple[RunningDaemon, QuitHolder]) -> None:
    rd, peer = holder_world
    pro_writes(rd)
    with rd.submission() as s:
        assert s.sendmail(PATIENT, [SENDER], reply()) == {}
    assert peer.quit_seen.wait(60), "the message never reached the peer"
    # the entry leaves the queue while the peer still holds QUIT (the client has not
    # given up on it): the result was committed at DATA's 250
    assert wait_for(lambda: rd.call(rd.store.queue_stats())[0] == 0), "the entry is still queued"
    assert not peer.client_closed.is_set() or peer.drop
    assert len(peer.received) == 1
    # nothing left to send again: no second copy arrives
    time.sleep(1.5)
    assert len(peer.received) == 1
