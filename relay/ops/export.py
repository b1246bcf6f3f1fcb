"""A patient's data, whole: `mailbox export` (the patient's right of access) and the
archive `mailbox close` keeps for 10 years (DESIGN.md §4 "Lifecycle").

The export is a tar: every message as an .eml under messages/<folder>/<uid>.eml (the
folder's name made a safe single directory name by `folder_dir`), the
dossier's documents under dossier/<id>/<file name> with their metadata in
dossier/documents.json, the audit log as audit.json, and manifest.json. With a
recipient key it is encrypted with GnuPG (python-gnupg) and nothing unencrypted touches
the disk: the tar is built in a private temporary directory (0700) and removed.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import os
import json
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gnupg

from dossier_bridge.dossier import read_document
from mailbox_store.crypto import fsync_dir
from relay.ops.instance import stop_gpg_agent
from relay.ops.progress import Step
from mailbox_store.store import Store
from policy.attachments import AttachmentLimits

ARCHIVE_NAME = re.compile(r"^(?P<ins>[0-9AB]{15})-(?P<date>\d{8})\.tar\.gpg$")


class ExportError(Exception):
    pass


def private_file(path: Path) -> None:
    """Create an empty 0600 file (never readable by others, not even while written)."""
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def durable_replace(partial: Path, out: Path) -> None:
    """fsync the file, rename it into place, fsync the directory: whole or absent,
    and on disk before anything (a purge) relies on it."""
    partial.chmod(0o600)
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    partial.replace(out)
    fsync_dir(out.parent)


@dataclass(frozen=True)
class Exported:
    path: Path
    messages: int
    encrypted: bool
    items: tuple[tuple[str, int], ...] = ()  # (folder, uid) of every message written
    documents: tuple[str, ...] = ()  # id of every dossier document written


def _add(tar: tarfile.TarFile, name: str, data: bytes, when: dt.datetime) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(when.timestamp())
    tar.addfile(info, io.BytesIO(data))


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]")


# Characters a folder's directory name never holds as such: the path separators, "%"
# (the escape itself, so the encoding is reversible), "~" (marks a cut name) and the
# characters Windows refuses in a file name; besides, every character that is not
# printable (controls, line separators, bidi overrides that disguise a name, unassigned).
_FOLDER_ESCAPED = frozenset('%~/\\:*?"<>|')
_FOLDER_DIR_MAX = 200  # bytes: under every file system's 255-byte name limit


def _escape(c: str) -> str:
    return "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))


def folder_dir(name: str) -> str:
    """The one directory (under messages/) that holds a folder's messages: the folder
    name percent-encoded (RFC 3986 §2.1 style, UTF-8) wherever it could leave that
    directory, not be created or not be read as it is: "/", "\\", "%", "~",
    Windows-reserved and non-printable characters, a leading "." (no ".", "..", nor
    hidden directory) and a trailing "." or space (Windows drops them).
    "Projets/2024" is "Projets%2F2024"; "INBOX" and "Dossier médical" stay as they
    are. A folder made before names were checked ("..", "../../x") is exported all the
    same, safely. An over-long result is cut and given a digest of the whole name, so
    two folders never share a directory."""
    out = [_escape(c) if c in _FOLDER_ESCAPED or not c.isprintable() else c for c in name]
    if not out:
        return "~empty"  # no folder is named "" (mailbox_store/folders.py); "~" is escaped in names
    if out[0] == ".":
        out[0] = _escape(".")
    if out[-1] in (".", " "):
        out[-1] = _escape(out[-1])
    if len("".join(out).encode("utf-8", "surrogatepass")) <= _FOLDER_DIR_MAX:
        return "".join(out)
    kept: list[str] = []
    size = 0
    for piece in out:  # whole characters and whole escapes only
        size += len(piece.encode("utf-8", "surrogatepass"))
        if size > _FOLDER_DIR_MAX - 17:
            break
        kept.append(piece)
    if kept and kept[-1] in (".", " "):
        kept[-1] = _escape(kept[-1])
    return "".join(kept) + "~" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _member_name(doc_id: str, filename: object) -> str:
    """dossier/<id>/<name>: the sender chose the file name, so only a plain, short,
    non-hidden name is kept (no path, no '..')."""
    name = _UNSAFE_NAME.sub("_", str(filename or ""))[:100].lstrip(".") or "document"
    return f"dossier/{doc_id}/{name}"


async def _write_tar(store: Store, ins: str, target: Path, limits: AttachmentLimits,
                     step: Step | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    mb = await store.require_mailbox(ins)
    now = dt.datetime.now(dt.timezone.utc)
    items: list[tuple[str, int]] = []
    folders = await store.list_folders(mb.id)
    snaps = [await store.snapshot(mb.id, f.name) for f in folders]
    total = sum(len(snap.messages) for snap in snaps)
    with tarfile.open(target, "w") as tar:
        for f, snap in zip(folders, snaps):
            uids = [m.uid for m in snap.messages]
            for start in range(0, len(uids), 200):  # bounded memory, as FETCH
                raws = await store.fetch_raw_many(ins, f.name, uids[start:start + 200])
                directory = folder_dir(f.name)
                for uid, raw in sorted(raws.items()):
                    _add(tar, f"messages/{directory}/{uid}.eml", raw, now)
                    items.append((f.name, uid))
                if step is not None:
                    step(len(items), total)
        documents = []
        for d in await store.documents(mb):
            _, content = await read_document(store, mb, d.id, "admin", "cli:export", limits)
            member = _member_name(d.id, d.meta.get("filename"))
            _add(tar, member, content, now)
            documents.append({"id": d.id, "file": member, "size": d.size, "filed_at": d.filed_at.isoformat(),
                              "filed_by": d.filed_by, **d.meta})
        _add(tar, "dossier/documents.json", json.dumps(documents, indent=2, ensure_ascii=False).encode(), now)
        audit = [{"at": e.at.isoformat(), "actor": e.actor, "action": e.action, "detail": e.detail,
                  "source": e.source} for e in await store.audit_events(mb.id)]
        _add(tar, "audit.json", json.dumps(audit, indent=2, ensure_ascii=False).encode(), now)
        manifest = {"ins": ins, "state": mb.state.value, "exported_at": now.isoformat(), "messages": len(items),
                    "folders": [f.name for f in folders],
                    "folder_dirs": {f.name: f"messages/{folder_dir(f.name)}" for f in folders},
                    "documents": len(documents)}
        _add(tar, "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode(), now)
    return items, [d["id"] for d in documents]


async def export(store: Store, ins: str, out: Path, recipient: str | None = None,
                 gnupg_home: Path | None = None, exclusive: bool = False,
                 limits: AttachmentLimits | None = None, step: Step | None = None) -> Exported:
    """exclusive: refuse when `out` exists (an archive is never replaced); `limits`:
    those documents filed at delivery are read back with (relay.toml [attachments]);
    `step(done, total)`: messages written so far (relay/ops/progress.py)."""
    limits = limits or AttachmentLimits()
    out.parent.mkdir(parents=True, exist_ok=True)
    if exclusive and out.exists():
        raise ExportError(f"{out} already exists: an archive is never overwritten")
    if recipient is None:
        partial = out.with_name(out.name + ".partial")
        private_file(partial)
        try:
            items, docs = await _write_tar(store, ins, partial, limits, step)
        except BaseException:
            partial.unlink(missing_ok=True)  # never leave plaintext behind
            raise
        await asyncio.to_thread(durable_replace, partial, out)
        return Exported(out, len(items), False, tuple(items), tuple(docs))
    # GnuPG runs as child processes we wait for, and the fsyncs wait for the disk:
    # in worker threads, so the daemon's other sessions go on meanwhile (the webmail's
    # "Fermer mon espace" runs this inside the daemon; DESIGN.md §6).
    gpg = await asyncio.to_thread(_gpg_with_key, recipient, gnupg_home)
    with tempfile.TemporaryDirectory(prefix="mssante-export-") as tmp:  # 0700
        plain = Path(tmp) / "export.tar"
        items, docs = await _write_tar(store, ins, plain, limits, step)
        partial = out.with_name(out.name + ".partial")
        await asyncio.to_thread(_encrypt, gpg, plain, partial, recipient, gnupg_home)
    await asyncio.to_thread(durable_replace, partial, out)
    return Exported(out, len(items), True, tuple(items), tuple(docs))


def _gpg_with_key(recipient: str, gnupg_home: Path | None) -> gnupg.GPG:
    """A GnuPG handle that has the recipient's public key (blocking: a worker thread)."""
    gpg = gnupg.GPG(gnupghome=str(gnupg_home) if gnupg_home else None)
    if not gpg.list_keys(keys=[recipient]):
        raise ExportError(f"no GnuPG public key for {recipient!r}" + (f" in {gnupg_home}" if gnupg_home else ""))
    return gpg


def _encrypt(gpg: gnupg.GPG, plain: Path, partial: Path, recipient: str, gnupg_home: Path | None) -> None:
    """The tar encrypted to `partial` (blocking: a worker thread); nothing left on failure."""
    try:
        with plain.open("rb") as f:
            result = gpg.encrypt_file(f, recipients=[recipient], output=str(partial), armor=False,
                                      always_trust=True)
    finally:
        if gnupg_home is not None:
            stop_gpg_agent(gnupg_home)
    if not result.ok:
        partial.unlink(missing_ok=True)
        raise ExportError(f"GnuPG encryption failed: {result.status}")


def expired_archives(directory: Path, years: int, today: dt.date | None = None) -> list[Path]:
    """Archives of closed mailboxes older than `years` (by the date in their name)."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    out = []
    for f in sorted(directory.glob("*.tar.gpg")):
        m = ARCHIVE_NAME.match(f.name)
        if not m:
            continue
        made = dt.datetime.strptime(m.group("date"), "%Y%m%d").date()
        try:
            limit = made.replace(year=made.year + years)
        except ValueError:  # 29 February
            limit = made.replace(year=made.year + years, day=28)
        if today >= limit:
            out.append(f)
    return out
