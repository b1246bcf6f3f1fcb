"""Master key rotation while the daemon runs: every data key re-wrapped, every message
still readable by the running daemon and after a restart, old key purged at the end."""
from __future__ import annotations

import asyncio
from pathlib import Path

from mailbox_store.crypto import MasterKey
from policy.recipients import MailboxState
from relay.core.config import load_config
from sqlalchemy import text
from tests.integration.conftest import INS_ACTIVE, PASSWORD_HASH, RunningDaemon, message
from tests.integration.test_backup import _all_messages
from tests.integration.test_cli import run
from tests.pg import sql


def _key_ids(cfg: Path) -> set[str]:
    with sql(load_config(cfg).store_url) as con:  # SQLite or PostgreSQL (tests/pg.py)
        return set(con.execute(text("SELECT master_key_id FROM mailboxes")).scalars())


def test_rotation_without_downtime(relay: RunningDaemon) -> None:
    base = relay.base
    cfg = base / "relay.toml"
    for i in range(3):
        relay.deliver(message(subject=f"avant rotation {i}"))
    before = asyncio.run(_all_messages(cfg))
    old_id = MasterKey.load(base / "keys/master.key").key_id
    p = run("keys", "rotate", config=cfg)
    assert p.returncode == 0, p.stderr
    new_id = MasterKey.load(base / "keys/master.key").key_id
    assert new_id != old_id and _key_ids(cfg) == {new_id}
    assert (base / f"keys/retired/{old_id}.key").exists()
    # the running daemon, which started with the old key, reads on and takes new mail
    c = relay.imap()
    c.select("INBOX")
    assert c.fetch("1", "(BODY.PEEK[])")[1][0][1] == before[(INS_ACTIVE, 1)]
    c.logout()
    relay.call(relay.store.create_mailbox("297122B00100259", MailboxState.ACTIVE, PASSWORD_HASH))
    relay.deliver(message(subject="apres rotation"), ins="297122B00100259")
    relay.deliver(message(subject="apres rotation"))
    relay.stop()
    after = asyncio.run(_all_messages(cfg))  # a fresh process with the new key
    assert all(after[k] == v for k, v in before.items()) and len(after) == len(before) + 2
    # the daemon wrapped its new mailbox with the key it held: a second pass finishes
    assert run("keys", "rotate", config=cfg).returncode == 0
    p = run("keys", "purge-retired", config=cfg)
    assert p.returncode == 0 and old_id in p.stdout
    assert len(_key_ids(cfg)) == 1
    assert len(asyncio.run(_all_messages(cfg))) == len(after)
