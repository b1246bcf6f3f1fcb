"""End to end with mbsync (Debian's isync), a real synchronising client: it logs in over
TLS, lists folders, pulls every message into a Maildir, and pushes a flag back."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import INS_ACTIVE, PASSWORD, RunningDaemon, message

MBSYNC = shutil.which("mbsync")
pytestmark = pytest.mark.skipif(MBSYNC is None and not os.environ.get("CI"),
                                reason="mbsync not installed (apt-get install isync)")


def _config(relay: RunningDaemon, tmp: Path) -> Path:
    local = tmp / "Maildir"
    local.mkdir()
    cfg = tmp / "mbsyncrc"
    cfg.write_text(f"""IMAPAccount patient
Host localhost
Port {relay.imap_ports[1]}
SSLType IMAPS
CertificateFile {relay.pki("ca.pem")}
User {INS_ACTIVE}@patient.mssante.fr
Pass "{PASSWORD}"

IMAPStore remote
Account patient

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel patient
Far :remote:
Near :local:
Patterns *
Create Near
Sync All
SyncState *
""")
    return cfg


def _maildir_files(root: Path, folder: str) -> list[Path]:
    return sorted(p for sub in ("new", "cur") for p in (root / folder / sub).glob("*"))


def test_mbsync_pulls_every_folder_and_pushes_flags(relay: RunningDaemon, tmp_path: Path) -> None:
    assert MBSYNC, "mbsync must be installed in CI"
    relay.deliver(message(subject="Resultats", body="Bonjour.\r\n"))
    relay.deliver(message(subject="Rendez-vous", body="A lundi.\r\n"))
    cfg = _config(relay, tmp_path)
    p = subprocess.run([MBSYNC, "-c", str(cfg), "-a"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    root = tmp_path / "Maildir"
    inbox = _maildir_files(root, "INBOX")
    assert len(inbox) == 2
    # mbsync stores with LF line ends and adds its X-TUID tracking header
    local = {b"".join(line for line in f.read_bytes().splitlines(keepends=True)
                      if not line.startswith(b"X-TUID:")) for f in inbox}
    assert local == {raw.replace(b"\r\n", b"\n") for raw in relay.inbox(INS_ACTIVE)}
    for folder in ("Sent", "Drafts", "Trash", "Archive"):
        assert (root / folder).is_dir(), folder
    # mark one message seen locally (Maildir "S" flag) and sync again: the server gets \\Seen
    first = inbox[0]
    seen = first.parent.parent / "cur" / (first.name.split(":2,")[0] + ":2,S")
    first.rename(seen)
    p = subprocess.run([MBSYNC, "-c", str(cfg), "-a"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    flags = [m.flags for m in relay.call(relay.store.messages(INS_ACTIVE))]
    assert sorted("\\Seen" in f for f in flags) == [False, True]
