"""Issue 10 §7: a name never becomes a path outside its directory.

IMAP CREATE/RENAME refuse "..", "." and empty levels (and control characters) with a
tagged `NO [CANNOT]` (RFC 5530 §3); a store made before that check, holding such
folders, still exports a tar that `tarfile.extractall` unpacks entirely inside its
target; `restore` reads only its own two regular members."""
from __future__ import annotations

import imaplib
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert, select

from mailbox_store.folders import FolderError
from mailbox_store.models import Folder
from relay.ops.export import folder_dir
from tests.integration.conftest import INS_ACTIVE, RunningDaemon, message
from tests.integration.test_cli import one_line_error, run

HOSTILE_FOLDERS = ["..", ".", "../../x", "a/../../b", "/etc", "..\\..\\win", "x\r\ny", "~empty", "%2E%2E"]


def tagged(c: imaplib.IMAP4, command: str, *args: str) -> tuple[str, bytes]:
    """(status, text of the tagged reply) of a raw command."""
    try:
        typ, data = c._simple_command(command, *args)  # type: ignore[attr-defined]
    except imaplib.IMAP4.error as e:  # imaplib raises on NO only for some commands
        return "NO", str(e).encode()
    return typ, data[-1] if data and data[-1] else b""


@pytest.mark.parametrize("name", ["..", ".", "../../x", "a/./b", "a/..", "a//b", "./hidden", '"a/../b"'])
def test_create_refuses_dot_components_with_cannot(relay: RunningDaemon, name: str) -> None:
    c = relay.imap()
    quoted = name if name.startswith('"') else f'"{name}"'
    typ, text = tagged(c, "CREATE", quoted)
    assert typ == "NO" and text.startswith(b"[CANNOT]"), (typ, text)
    typ, listed = c.list()
    assert typ == "OK" and not any(b'"a"' in x or b".." in x for x in listed)
    c.logout()


def test_control_characters_never_make_a_folder_nor_reach_the_wire(relay: RunningDaemon) -> None:
    c = relay.imap()
    c.literal = b"x\r\n* OK injected"  # type: ignore[attr-defined]
    try:
        typ, data = c._simple_command("CREATE")  # type: ignore[attr-defined]
    except imaplib.IMAP4.error as e:  # BAD: the parser refuses it first
        typ, data = "BAD", [str(e).encode()]
    assert typ in ("BAD", "NO") and b"injected" not in b"".join(x for x in data if isinstance(x, bytes))
    assert c.noop()[0] == "OK"  # the session reads on, nothing was injected
    c.logout()
    # the store refuses them too, for any front that would not parse names first
    mb = relay.call(relay.store.require_mailbox(INS_ACTIVE))
    for name in ("x\r\ny", "a\x00b", "tab\there", "c1\x85"):
        with pytest.raises(FolderError) as refused:
            relay.call(relay.store.create_folder(mb.id, name))
        assert refused.value.code == "CANNOT" and str(refused.value).isprintable()
        with pytest.raises(FolderError) as refused:
            relay.call(relay.store.rename_folder(mb.id, "Drafts", name))
        assert refused.value.code == "CANNOT"
    assert not any(f.name.startswith(("x", "a", "tab", "c1")) for f in relay.call(relay.store.list_folders(mb.id)))


def test_rename_to_a_dot_name_is_refused_and_the_selection_stays(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="reste sélectionné"))
    c = relay.imap()
    assert c.create("Analyses")[0] == "OK"
    assert c.select("INBOX")[0] == "OK" and c.copy("1", "Analyses")[0] == "OK"
    assert c.select("Analyses")[0] == "OK"
    for target in ("..", "../x", "Analyses/.", "Projets//2024"):
        typ, text = tagged(c, "RENAME", "Analyses", f'"{target}"')
        assert typ == "NO" and text.startswith(b"[CANNOT]"), (target, typ, text)
    # the refused RENAME left the folder selected: FETCH still works
    typ, data = c.fetch("1", "(UID)")
    assert typ == "OK" and b"UID 1" in data[0]
    typ, text = tagged(c, "RENAME", "Nowhere", "Elsewhere")
    assert typ == "NO" and text.startswith(b"[NONEXISTENT]")
    assert c.rename("Analyses", "Examens")[0] == "OK"
    c.logout()


@given(st.text(max_size=300))
def test_folder_dir_is_one_safe_component(name: str) -> None:
    d = folder_dir(name)
    assert d and "/" not in d and "\\" not in d and "\x00" not in d
    assert d not in (".", "..") and not d.startswith(".") and not d.endswith((".", " "))
    assert all(c.isprintable() for c in d)
    assert len(d.encode("utf-8", "surrogatepass")) <= 200


@given(st.text(max_size=60), st.text(max_size=60))
def test_folder_dir_never_merges_two_folders(a: str, b: str) -> None:
    if a != b:
        assert folder_dir(a) != folder_dir(b)


def test_folder_dir_keeps_ordinary_names() -> None:
    assert [folder_dir(n) for n in ("INBOX", "Sent", "Dossier médical", "Projets/2024", "..")] == \
        ["INBOX", "Sent", "Dossier médical", "Projets%2F2024", "%2E%2E"]


def _old_store_folders(relay: RunningDaemon) -> None:
    """Folders with hostile names, as a store made before the check could hold them,
    each with a copy of the INBOX's message."""
    store = relay.store
    mb = relay.call(store.require_mailbox(INS_ACTIVE))

    async def add() -> None:
        async with store.engine.begin() as conn:
            for n in HOSTILE_FOLDERS:
                await conn.execute(insert(Folder).values(mailbox_id=mb.id, name=n, special_use=None,
                                                         uidvalidity=int(time.time()), uidnext=1))
            assert len((await conn.execute(select(Folder.id).where(Folder.mailbox_id == mb.id))).all()) > 9

    relay.call(add())
    for n in HOSTILE_FOLDERS:
        relay.call(store.copy(mb.id, "INBOX", [1], n))


def test_export_of_hostile_folder_names_unpacks_inside_its_target(relay: RunningDaemon, tmp_path: Path) -> None:
    relay.deliver(message(subject="Compte rendu"))
    _old_store_folders(relay)
    plain = tmp_path / "export.tar"
    p = run("mailbox", "export", INS_ACTIVE, "--out", str(plain), config=relay.base / "relay.toml")
    assert p.returncode == 0, p.stderr
    # unpacked the trusting way (no tarfile filter), deep inside a sandbox
    sandbox = tmp_path / "sandbox"
    target = sandbox / "a" / "b" / "target"
    target.mkdir(parents=True)
    with tarfile.open(plain) as tar:
        names = tar.getnames()
        assert all(tar.getmember(n).isreg() for n in names)
        tar.extractall(target)  # noqa: S202 (the point of the test)
    for n in names:
        assert not os.path.isabs(n) and ".." not in n.split("/") and "." not in n.split("/"), n
    outside = [p for p in sandbox.rglob("*") if target not in p.parents and p not in (target, target.parent,
                                                                                     target.parent.parent)]
    assert outside == []
    assert not (tmp_path / "x").exists() and not (tmp_path / "b").exists()
    manifest = json.loads((target / "manifest.json").read_text())
    # every folder's message is in the export, in its own directory
    for n in HOSTILE_FOLDERS:
        directory = target / manifest["folder_dirs"][n]
        assert directory.parent == target / "messages", n
        assert (directory / "1.eml").read_bytes() == relay.inbox(INS_ACTIVE)[0]
    assert len({manifest["folder_dirs"][n] for n in manifest["folders"]}) == len(manifest["folders"])


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, link
    return info


@pytest.mark.parametrize("members, expected", [
    ([(_info("manifest.json", 2), b"{}"), (_info("relay.db", kind=tarfile.SYMTYPE, link="/etc/passwd"), None)],
     "not a regular file"),
    ([(_info("manifest.json", 2), b"{}"), (_info("relay.db", kind=tarfile.LNKTYPE, link="manifest.json"), None)],
     "not a regular file"),
    ([(_info("manifest.json", 2), b"{}"), (_info("relay.db", 1), b"x"), (_info("../../evil", 1), b"x")],
     "is not a mssante-relay backup"),
    ([(_info("/abs/manifest.json", 2), b"{}"), (_info("relay.db", 1), b"x")], "is not a mssante-relay backup"),
])
def test_restore_refuses_links_and_foreign_members(instance: Path, tmp_path: Path,
                                                    members: list[tuple[tarfile.TarInfo, bytes | None]],
                                                    expected: str) -> None:
    archive = tmp_path / "hostile.tar.gz"
    archive.write_bytes(_tar_gz(members))
    db = instance / "data" / "relay.db"
    before = db.read_bytes() if db.exists() else None
    p = run("restore", str(archive), "--force", config=instance / "relay.toml")
    one_line_error(p, expected)
    assert (db.read_bytes() if db.exists() else None) == before
    assert not (tmp_path.parent / "evil").exists()
