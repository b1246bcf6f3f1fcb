"""`mssante-relay keys rotate` and `keys purge-retired`: master key rotation without
downtime.

rotate: a new master key is written beside the old one and becomes current by an atomic
rename; the old one moves to keys/retired/ (still able to unwrap); then every mailbox's
data key is re-wrapped with the new key. A running daemon needs nothing: when it meets
a data key wrapped by a key it does not hold, it reads keys/ again (crypto.py). No
message is re-encrypted: only the 32-byte data keys are re-wrapped.
purge-retired: deletes the retired keys no data key uses any more.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from mailbox_store.crypto import RETIRED_DIR, MasterKey, _key_id, _read_key, fsync_dir, write_key
from mailbox_store.models import Mailbox
from mailbox_store.store import Store


@dataclass(frozen=True)
class Rotation:
    old_id: str
    new_id: str
    rewrapped: int


async def rotate(store_url: str, key_path: Path, password_file: Path | None = None) -> Rotation:
    old = _read_key(key_path)
    pending = key_path.with_name(key_path.name + ".new")
    retired = key_path.parent / RETIRED_DIR
    retired.mkdir(mode=0o700, exist_ok=True)
    if not pending.exists():
        new = AESGCM.generate_key(bit_length=256)
        write_key(pending, new)
    else:  # a rotation interrupted after writing its key: finish it with that key
        new = _read_key(pending)
    old_file = retired / f"{_key_id(old)}.key"
    if not old_file.exists():
        write_key(old_file, old)
    os.replace(pending, key_path)  # atomic: the new key is current from here on
    fsync_dir(key_path.parent)  # durable before any data key depends on it
    master = MasterKey.load(key_path)
    store = await Store.open(store_url, master, password_file=password_file, listen_nodes=False)
    try:
        count = await store.rewrap_data_keys(master)
    finally:
        await store.close()
    return Rotation(_key_id(old), master.key_id, count)


async def purge_retired(store_url: str, key_path: Path, password_file: Path | None = None) -> list[str]:
    master = MasterKey.load(key_path)
    store = await Store.open(store_url, master, password_file=password_file, listen_nodes=False)
    try:
        async with store.engine.connect() as conn:
            used = set((await conn.execute(select(Mailbox.master_key_id).distinct())).scalars())
    finally:
        await store.close()
    removed = []
    for f in sorted((key_path.parent / RETIRED_DIR).glob("*.key")):
        key_id = _key_id(_read_key(f))
        if key_id not in used and key_id != master.key_id:
            f.unlink()
            removed.append(key_id)
    return removed
