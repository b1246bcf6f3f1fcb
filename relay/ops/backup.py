"""`mssante-relay backup` / `restore`: a consistent online copy of the store.

The copy is taken with SQLite's online backup API while the daemon runs (readers and
the writer go on; the copy is one consistent snapshot). The archive (tar.gz) holds the
database and a manifest: when, which schema, which master key wrapped the data keys
(its id, never the key), how many mailboxes and messages, and the database's sha256.
The master key itself is never in a backup: it is kept apart (README), and a restore
checks that the configured one is the key the backup needs.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import sqlite3
import tarfile
import tempfile
from pathlib import Path

from mailbox_store.crypto import MasterKey
from relay.daemon import storelock
from relay.ops.export import durable_replace, private_file

MANIFEST = "manifest.json"
DATABASE = "relay.db"
FORMAT = "mssante-relay-backup/1"


class BackupError(Exception):
    pass


def sqlite_path(store_url: str) -> Path:
    prefix = "sqlite+aiosqlite:///"
    if not store_url.startswith(prefix):
        if store_url.startswith("postgresql"):
            # a pg_dump is one consistent snapshot (MVCC) taken while every node runs
            raise BackupError("backup/restore handle the SQLite store; on PostgreSQL use pg_dump --format=custom "
                              "(consistent while the nodes run) or base backups with WAL archiving, and keep "
                              "the master key apart as for SQLite")
        raise BackupError("backup/restore handle the SQLite store; use the database's own tools for "
                          f"{store_url.split(':', 1)[0]}")
    return Path(store_url[len(prefix):])


def backup(store_url: str, master: MasterKey, out: Path) -> dict[str, object]:
    db = sqlite_path(store_url)
    if not db.exists():
        raise BackupError(f"no database at {db}")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / DATABASE
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)  # SQLite online backup: one consistent snapshot
            key_ids = sorted({r[0] for r in dst.execute("SELECT master_key_id FROM mailboxes")})
            manifest = {
                "format": FORMAT,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "schema": dst.execute("SELECT version_num FROM alembic_version").fetchone()[0],
                "master_key_ids": key_ids,
                "mailboxes": dst.execute("SELECT count(*) FROM mailboxes").fetchone()[0],
                "messages": dst.execute("SELECT count(*) FROM messages").fetchone()[0],
            }
        finally:
            src.close()
            dst.close()
        if any(k != master.key_id for k in key_ids):
            raise BackupError(f"the store holds data keys of master keys {key_ids}, the configured one is "
                              f"{master.key_id}: finish the key rotation first")
        manifest["sha256"] = hashlib.sha256(copy.read_bytes()).hexdigest()
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        private_file(partial)
        try:
            with tarfile.open(partial, "w:gz") as tar:
                data = json.dumps(manifest, indent=2).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))
                tar.add(copy, arcname=DATABASE)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        durable_replace(partial, out)  # a backup file is whole or absent
    return manifest


def _shown(names: list[str]) -> str:
    """Member names for an error line: printable, bounded (a hostile archive may hold
    any bytes and thousands of names)."""
    safe = ["".join(c if c.isprintable() else "?" for c in n[:80]) for n in names[:5]]
    return repr(safe) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def restore(archive: Path, store_url: str, master: MasterKey, force: bool = False) -> dict[str, object]:
    db = sqlite_path(store_url)
    if db.exists() and not force:
        raise BackupError(f"{db} exists; restore refuses to overwrite a store without --force")
    try:
        lock = storelock.acquire(store_url)  # held until the new database is in place
    except storelock.StoreBusy as e:
        raise BackupError(f"{e}: stop it before restoring") from None
    try:
        return _restore(archive, db, master)
    finally:
        storelock.release(lock)


def _restore(archive: Path, db: Path, master: MasterKey) -> dict[str, object]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members: list[tarfile.TarInfo] = []
            while (member := tar.next()) is not None and len(members) <= 2:  # never a hostile list whole
                members.append(member)
            names = [m.name for m in members]
            if sorted(names) != sorted({MANIFEST, DATABASE}):
                # exactly our two names, once each: nothing else is read, and no member
                # name is ever used as a path (no "..", no absolute path can matter)
                raise BackupError(f"{archive} is not a mssante-relay backup (holds {_shown(names)})")
            if not all(m.isreg() for m in members):
                # a link (symbolic or hard) or a device in place of a file: refused,
                # never followed (tarfile.extractfile would follow a link inside the archive)
                raise BackupError(f"{archive} is not a mssante-relay backup (a member is not a regular file)")
            manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
            data = tar.extractfile(DATABASE).read()  # type: ignore[union-attr]
    except (OSError, tarfile.TarError, json.JSONDecodeError) as e:
        raise BackupError(f"cannot read backup {archive}: {e}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}")
    if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        raise BackupError("backup damaged: the database does not match its sha256")
    needed = manifest.get("master_key_ids") or []
    if not all(isinstance(k, str) and master.knows(k) for k in needed):
        raise BackupError(f"this backup needs master key {needed}, the configured key is {master.key_id} "
                          "(retired keys are looked for in keys/retired/)")
    db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    partial = db.with_name(db.name + ".restoring")
    partial.write_bytes(data)
    partial.chmod(0o600)
    partial.replace(db)
    return manifest
