"""backup / restore: an online copy while the daemon delivers, restored into a fresh
instance and read back message by message."""
from __future__ import annotations

import asyncio
import shutil
import tarfile
from pathlib import Path

from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store
from relay.core.config import load_config
from relay.ops.instance import init_instance
from tests.integration.conftest import INS_ACTIVE, INS_PENDING, RunningDaemon, message
from tests.integration.test_cli import one_line_error, run


async def _all_messages(cfg: Path) -> dict[tuple[str, int], bytes]:
    config = load_config(cfg)
    store = await Store.open(config.store_url, MasterKey.load(config.master_key))
    try:
        out = {}
        for mb in await store.list_mailboxes():
            for m in await store.messages(mb.ins):
                out[(mb.ins, m.uid)] = await store.fetch_raw(mb.ins, "INBOX", m.uid)
        return out
    finally:
        await store.close()


def test_backup_while_running_then_restore_into_a_fresh_instance(relay: RunningDaemon, tmp_path: Path) -> None:
    for i in range(5):
        relay.deliver(message(subject=f"avant {i}"), ins=INS_ACTIVE if i % 2 else INS_PENDING)
    cfg_a = relay.base / "relay.toml"
    archive = tmp_path / "backup.tar.gz"
    p = run("backup", "--out", str(archive), config=cfg_a)  # the daemon is running
    assert p.returncode == 0, p.stderr
    relay.deliver(message(subject="apres"))  # after the snapshot: not in the backup
    relay.stop()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert sorted(names) == ["manifest.json", "relay.db"]
        assert not any("key" in n for n in names)
    # the master key is never in the archive (its id is, to check the restore)
    key_b64 = (relay.base / "keys/master.key").read_text().strip().encode()
    with tarfile.open(archive) as tar:
        assert all(key_b64 not in tar.extractfile(n).read() for n in tar.getnames())  # type: ignore[union-attr]

    fresh = tmp_path / "fresh"
    init_instance(fresh)
    cfg_b = fresh / "relay.toml"
    one_line_error(run("restore", str(archive), config=cfg_b), "needs master key")
    shutil.copy(relay.base / "keys/master.key", fresh / "keys/master.key")  # kept apart, brought back
    p = run("restore", str(archive), config=cfg_b)
    assert p.returncode == 0, p.stderr
    original = asyncio.run(_all_messages(cfg_a))
    restored = asyncio.run(_all_messages(cfg_b))
    assert len(restored) == 5 and all(restored[k] == original[k] for k in restored)
    assert len(original) == 6
    one_line_error(run("restore", str(archive), config=cfg_b), "--force")
    assert run("restore", str(archive), "--force", config=cfg_b).returncode == 0


def test_damaged_or_foreign_archives_are_refused(instance: Path, tmp_path: Path) -> None:
    cfg = instance / "relay.toml"
    archive = tmp_path / "b.tar.gz"
    assert run("backup", "--out", str(archive), config=cfg).returncode == 0
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(bytes(data))
    target = tmp_path / "t"
    init_instance(target)
    shutil.copy(instance / "keys/master.key", target / "keys/master.key")
    one_line_error(run("restore", str(damaged), config=target / "relay.toml"), "restore")
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(cfg, arcname="relay.toml")
    one_line_error(run("restore", str(other), config=target / "relay.toml"), "not a mssante-relay backup")


def test_restore_refuses_while_the_daemon_runs_and_one_daemon_per_store(relay: RunningDaemon,
                                                                         tmp_path: Path) -> None:
    cfg = relay.base / "relay.toml"
    archive = tmp_path / "b.tar.gz"
    assert run("backup", "--out", str(archive), config=cfg).returncode == 0
    one_line_error(run("restore", str(archive), "--force", config=cfg), "daemon is running")
    second = run("serve", config=cfg)  # a second daemon on the same SQLite file
    assert second.returncode == 2 and "daemon is running" in second.stderr.strip().splitlines()[-1]
