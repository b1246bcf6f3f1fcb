"""Two daemons over one PostgreSQL (issue 14 §2): an IMAP IDLE session on node B is woken
by a delivery made by node A's MX, and mail sent to both MXes at once is stored once
each with UIDs unique and increasing. Skipped when PostgreSQL is not installed."""
from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioimaplib import IMAP4_SSL

from tests.integration.conftest import INS_ACTIVE, PASSWORD, RunningDaemon, message, seed_mailboxes
from tests.integration.test_imap_idle import _idle_until
from tests.nodes.conftest import pg, pg_db  # noqa: F401 (fixtures)
from tests.pg import PgServer


@pytest.fixture
def two_nodes(template_instance: Path, tmp_path: Path, pg: PgServer,  # noqa: F811
              pg_db: str) -> Iterator[tuple[RunningDaemon, RunningDaemon]]:  # noqa: F811
    d = tmp_path / "inst"
    shutil.copytree(template_instance, d, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    cfg = d / "relay.toml"
    cfg.write_text(cfg.read_text().replace('url = "sqlite+aiosqlite:///relay.db"', f'url = "{pg.url(pg_db)}"'))
    seed_mailboxes(cfg)
    # one configuration, one master key, ephemeral ports: two identical nodes
    a = RunningDaemon(cfg).start()
    try:
        b = RunningDaemon(cfg).start()
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b
    finally:
        b.stop()
        a.stop()


def test_idle_on_node_b_sees_a_delivery_made_by_node_a(two_nodes: tuple[RunningDaemon, RunningDaemon]) -> None:
    a, b = two_nodes
    ctx = ssl.create_default_context(cafile=str(b.pki("ca.pem")))

    async def scenario() -> tuple[list[bytes], float]:
        c = IMAP4_SSL("127.0.0.1", b.imap_ports[1], ssl_context=ctx, timeout=10)
        await c.wait_hello_from_server()
        assert (await c.login(INS_ACTIVE, PASSWORD)).result == "OK"
        assert (await c.select("INBOX")).result == "OK"
        idle = await c.idle_start(timeout=30)
        sent = time.monotonic()
        await asyncio.to_thread(a.deliver, message(subject="sur le noeud A"))
        seen = await _idle_until(c, lambda s: any(b"EXISTS" in x for x in s), timeout=20)
        delay = time.monotonic() - sent
        c.idle_done()
        await asyncio.wait_for(idle, 10)
        await c.logout()
        return seen, delay

    seen, delay = asyncio.run(scenario())
    assert any(re.search(rb"\b1 EXISTS", x) for x in seen), seen
    print(f"IDLE on node B woken {delay:.3f} s after node A's 250 (SMTP session included)")


def test_both_mx_at_once_store_every_message_once(two_nodes: tuple[RunningDaemon, RunningDaemon]) -> None:
    a, b = two_nodes
    per_node, threads_per_node = 40, 4
    errors: list[BaseException] = []

    def send(rd: RunningDaemon, tag: str, start: int) -> None:
        try:
            for i in range(start, per_node, threads_per_node):
                rd.deliver(message(subject=f"{tag}-{i}", message_id=f"<{tag}-{i}@test-operator.mssante.fr>"))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=send, args=(rd, tag, k)) for rd, tag in ((a, "A"), (b, "B"))
               for k in range(threads_per_node)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    msgs = b.call(b.store.messages(INS_ACTIVE, "INBOX"))
    uids = [m.uid for m in msgs]
    assert sorted(uids) == list(range(1, 2 * per_node + 1))
    subjects = []
    for m in msgs:
        raw = b.call(b.store.fetch_raw(INS_ACTIVE, "INBOX", m.uid))
        subjects.append(re.search(rb"Subject: (\S+)", raw).group(1))  # type: ignore[union-attr]
    assert sorted(subjects) == sorted(f"{t}-{i}".encode() for t in "AB" for i in range(per_node))


def test_test_address_budget_holds_across_nodes(two_nodes: tuple[RunningDaemon, RunningDaemon]) -> None:
    """TEST acknowledgements per sender: the budget (10 per hour in the template) is one
    for all nodes, not one per node."""
    from relay.smtp.autotest import AutoTest

    a, b = two_nodes
    limit = a.config.delivery.auto_reply_per_sender  # type: ignore[union-attr]
    raw = message(subject="TEST de messagerie", body="Ceci est un TEST.\r\n",
                  to="reponse.automatique-test@patient.mssante.fr")
    on_a, on_b = AutoTest(a.daemon.runtime), AutoTest(b.daemon.runtime)  # type: ignore[arg-type]
    # the budget is taken when the acknowledgement commits (as the MX does, with the
    # message); prepare says None once the budget has no room left
    def answered(node: RunningDaemon, auto: AutoTest, queue_id: str) -> bool:
        ack = node.call(auto.prepare("<dr.martin@test-operator.mssante.fr>", raw, queue_id))
        if ack is None:
            return False
        node.call(node.store.commit_outgoing(ack))
        return bool(ack.budget is not None and ack.budget.granted)

    got = [answered(a, on_a, f"a{i}") for i in range(limit - 1)] + [answered(b, on_b, f"b{i}") for i in range(3)]
    assert got == [True] * limit + [False, False]  # True: an acknowledgement was granted


class HoldingMX:
    """The receiving operator's MX (aiosmtpd): records each message it acknowledges. While
    `hold` is set, the final reply to DATA waits; a client gone meanwhile (killed) gets
    no acknowledgement, and its message is not counted as delivered."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.hold = threading.Event()
        self.held = 0
        self.held_from: dict[str, int] = {}  # by the sending node's EHLO name

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.hold.is_set():
            self.held += 1
            self.held_from[session.host_name] = self.held_from.get(session.host_name, 0) + 1
            while self.hold.is_set():
                await asyncio.sleep(0.02)
        if server.transport is None or server.transport.is_closing():
            return "451 4.3.0 lost"
        self.received.extend(envelope.rcpt_tos)
        return "250 OK queued"


def test_kill_9_of_one_node_the_other_finishes_its_queue(template_instance: Path, tmp_path: Path,
                                                          pg: PgServer, pg_db: str) -> None:  # noqa: F811
    import datetime as dt
    import os
    import signal
    import subprocess
    import sys

    from mailbox_store.crypto import MasterKey
    from mailbox_store.outbound import Recipient
    from mailbox_store.store import Store
    from relay.core.config import load_config
    from tests.integration.test_conversations import pro_mx
    from tests.ports import free_port

    d = tmp_path / "inst"
    shutil.copytree(template_instance, d, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    cfg = d / "relay.toml"
    port = free_port()
    cfg.write_text(cfg.read_text().replace('url = "sqlite+aiosqlite:///relay.db"', f'url = "{pg.url(pg_db)}"')
                   .replace('"127.0.0.1:2626"', f'"127.0.0.1:{port}"')
                   .replace("backoff = [60, 300, 900, 1800, 3600, 7200, 14400]", "backoff = [1]")
                   .replace("lease = 60", "lease = 3").replace("concurrency = 16", "concurrency = 6")
                   .replace("per_destination = 4", "per_destination = 6"))
    seed_mailboxes(cfg)
    # the second node greets with another name, so the MX tells whose attempts it holds
    cfg_b = d / "relay-b.toml"
    cfg_b.write_text(cfg.read_text().replace('hostname = "mx.patient.mssante.fr"', 'hostname = "mx-b.patient.mssante.fr"', 1))
    total = 120
    config = load_config(cfg)

    async def fill() -> None:
        store = await Store.open(config.store_url, MasterKey.load(config.master_key))
        mb = await store.require_mailbox(INS_ACTIVE)
        for i in range(total):
            await store.enqueue(mb, message(subject=f"r{i}"), f"{INS_ACTIVE}@patient.mssante.fr",
                                [Recipient(f"dr{i}@test-operator.mssante.fr", "test-operator.mssante.fr")], "reply",
                                dt.timedelta(days=1))
        await store.close()

    async def depth() -> int:
        store = await Store.open(config.store_url, MasterKey.load(config.master_key))
        try:
            return (await store.queue_stats())[0]
        finally:
            await store.close()

    asyncio.run(fill())
    mx = HoldingMX()
    controller = pro_mx(d / "pki", port, mx)  # type: ignore[arg-type]
    root = Path(__file__).resolve().parents[2]
    nodes = [subprocess.Popen([sys.executable, "-m", "relay.cli", "serve", "--config", str(c)], cwd=root,
                              stdout=subprocess.DEVNULL, stderr=(tmp_path / f"node{k}.log").open("w"),
                              env={**os.environ, "PYTHONPATH": str(root)}) for k, c in enumerate((cfg, cfg_b))]
    try:
        deadline = time.monotonic() + 120
        while len(mx.received) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(mx.received) >= 30, (tmp_path / "node0.log").read_text()[-2000:]
        mx.hold.set()  # attempts in flight now wait for their 250
        # kill whichever node has attempts waiting for their 250 (SKIP LOCKED hands the
        # entries to whichever node asks first, so either may hold them all)
        names = {"mx.patient.mssante.fr": 0, "mx-b.patient.mssante.fr": 1}
        deadline = time.monotonic() + 60
        while max(mx.held_from.values(), default=0) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim_name, held = max(mx.held_from.items(), key=lambda kv: kv[1], default=("", 0))
        assert held >= 3, mx.held_from
        victim = names[victim_name]
        survivor = 1 - victim
        nodes[victim].send_signal(signal.SIGKILL)
        nodes[victim].wait(30)
        time.sleep(0.5)
        mx.hold.clear()
        deadline = time.monotonic() + 180
        while len(set(mx.received)) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        assert nodes[survivor].poll() is None, (tmp_path / f"node{survivor}.log").read_text()[-2000:]
        assert sorted(set(mx.received)) == sorted(f"dr{i}@test-operator.mssante.fr" for i in range(total))
        assert len(mx.received) == total  # no message acknowledged twice
        deadline = time.monotonic() + 30
        while asyncio.run(depth()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert asyncio.run(depth()) == 0
    finally:
        for n in nodes:
            if n.poll() is None:
                n.send_signal(signal.SIGTERM)
                try:
                    n.wait(60)
                except subprocess.TimeoutExpired:
                    n.kill()
        controller.stop()


def test_idle_on_node_b_sees_flags_set_on_node_a(two_nodes: tuple[RunningDaemon, RunningDaemon]) -> None:
    """A remote change carries no flags (nodefeed.py): node B's session reads them back."""
    a, b = two_nodes
    a.deliver(message(subject="a marquer"))
    ctx = ssl.create_default_context(cafile=str(b.pki("ca.pem")))

    async def scenario() -> list[bytes]:
        c = IMAP4_SSL("127.0.0.1", b.imap_ports[1], ssl_context=ctx, timeout=10)
        await c.wait_hello_from_server()
        assert (await c.login(INS_ACTIVE, PASSWORD)).result == "OK"
        assert (await c.select("INBOX")).result == "OK"
        idle = await c.idle_start(timeout=30)

        def flag() -> None:
            other = a.imap()
            other.select("INBOX")
            other.store("1", "+FLAGS", "\\Flagged")
            other.logout()
        await asyncio.to_thread(flag)
        seen = await _idle_until(c, lambda s: any(b"FETCH" in x and b"Flagged" in x for x in s), timeout=20)
        c.idle_done()
        await asyncio.wait_for(idle, 10)
        await c.logout()
        return seen

    seen = asyncio.run(scenario())
    assert any(b"FETCH" in x and b"\\Flagged" in x for x in seen), seen
