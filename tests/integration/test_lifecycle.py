"""Mailbox lifecycle commands: activation code, opposition, majority, stale mailboxes."""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from sqlalchemy import update

from mailbox_store.models import Mailbox
from relay.core.config import load_config
from tests.integration.conftest import INS_ACTIVE, INS_PENDING, RunningDaemon, message
from tests.integration.test_cli import one_line_error, run
from tests.pg import sql

NEW = "185022B12345612"


def test_activation_code_is_shown_once_and_works_once(instance: Path) -> None:
    cfg = instance / "relay.toml"
    p = run("mailbox", "add", NEW, config=cfg)
    assert p.returncode == 0
    code = re.search(r"activation code: ([A-Z2-9]{5}-[A-Z2-9]{5})", p.stdout).group(1)  # type: ignore[union-attr]
    db = b"".join(f.read_bytes() for f in instance.glob("relay.db*"))
    assert code.encode() not in db  # only its hash is stored
    one_line_error(run("mailbox", "activate", NEW, "--code", "AAAAA-AAAAA", config=cfg), "does not match")
    assert run("mailbox", "activate", NEW, "--code", code.lower(), config=cfg).returncode == 0
    assert json.loads(run("mailbox", "show", NEW, "--json", config=cfg).stdout)["state"] == "active"
    one_line_error(run("mailbox", "activate", NEW, "--code", code, config=cfg), "not waiting")
    one_line_error(run("mailbox", "activate", "160017512300140", "--code", code, config=cfg), "no mailbox")
    assert "activation code" not in run("mailbox", "add", "297122B00100259", "--state", "active",
                                        config=cfg).stdout


def test_oppose_refuses_mail(relay: RunningDaemon) -> None:
    cfg = relay.base / "relay.toml"
    relay.daemon.runtime.store._cache._ttl = 0  # type: ignore[union-attr]  # see the CLI's change at once
    assert run("mailbox", "oppose", INS_ACTIVE, config=cfg).returncode == 0
    with relay.smtp() as s:
        s.mail("dr.martin@test-operator.mssante.fr")
        code, text = s.rcpt(f"{INS_ACTIVE}@patient.mssante.fr")
        assert (code, text[:5]) == (550, b"5.2.1")


def test_majority_removes_guardians(relay: RunningDaemon) -> None:
    cfg = relay.base / "relay.toml"
    assert run("mailbox", "guardian", "add", INS_PENDING, INS_ACTIVE, config=cfg).returncode == 0
    p = run("mailbox", "majority", INS_PENDING, config=cfg)
    assert p.returncode == 0 and INS_ACTIVE in p.stdout
    assert run("mailbox", "guardian", "list", INS_PENDING, config=cfg).stdout.strip() == ""
    events = json.loads(run("audit", INS_PENDING, "--json", config=cfg).stdout)
    assert any(e["action"] == "majority" and INS_ACTIVE in e["detail"] for e in events)
    relay.deliver(message(), ins=INS_PENDING)


def test_stale_mailboxes(instance: Path) -> None:
    cfg = instance / "relay.toml"
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)
    recent = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    with sql(load_config(cfg).store_url) as con:  # SQLite or PostgreSQL (tests/pg.py)
        con.execute(update(Mailbox).values(created_at=old))
        con.execute(update(Mailbox).where(Mailbox.ins == INS_ACTIVE).values(last_login_at=recent))
        con.execute(update(Mailbox).where(Mailbox.ins == INS_PENDING).values(last_login_at=old))
    rows = {r["ins"]: r for r in json.loads(run("mailbox", "stale", "--json", config=cfg).stdout)}
    assert INS_ACTIVE not in rows and INS_PENDING in rows and rows[INS_PENDING]["last_login"]
    assert any(r["last_login"] is None for r in rows.values())  # never logged in, created long ago
    assert "postmaster" not in rows
    one_line_error(run("mailbox", "stale", "--days", "0", config=cfg), "--days")


def _gpg_decrypt(home: Path, data: bytes) -> bytes:
    """Decrypting needs the secret key, so gpg starts an agent for `home`: stop it, or
    every run would leave one behind (issue 16)."""
    import gnupg

    from relay.ops.instance import stop_gpg_agent
    try:
        result = gnupg.GPG(gnupghome=str(home)).decrypt(data)
    finally:
        stop_gpg_agent(home)
    assert result.ok, result.status
    return result.data


def _agents_of(home: Path) -> list[str]:
    """gpg-agent processes serving `home` (their command line names it, or they run from it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"gpg-agent") and (str(home).encode() in b" ".join(cmd)
                                                      or f"GNUPGHOME={home}".encode() in env):
            found.append(proc.name)
    return found


def test_export_plain_and_encrypted(relay: RunningDaemon, tmp_path: Path) -> None:
    import io
    import tarfile
    cfg = relay.base / "relay.toml"
    relay.deliver(message(subject="Compte rendu"))
    c = relay.imap()
    c.select("INBOX")
    c.fetch("1", "(BODY.PEEK[])")
    c.logout()
    plain = tmp_path / "export.tar"
    assert run("mailbox", "export", INS_ACTIVE, "--out", str(plain), config=cfg).returncode == 0
    with tarfile.open(plain) as tar:
        names = tar.getnames()
        assert "messages/INBOX/1.eml" in names and "audit.json" in names and "manifest.json" in names
        assert tar.extractfile("messages/INBOX/1.eml").read() == relay.inbox(INS_ACTIVE)[0]  # type: ignore[union-attr]
        audit = json.loads(tar.extractfile("audit.json").read())  # type: ignore[union-attr]
        assert any(e["action"] == "message.read" for e in audit)
    assert oct(plain.stat().st_mode & 0o777) == "0o600"
    from relay.core.config import load_config
    config = load_config(cfg)
    enc = tmp_path / "export.tar.gpg"
    p = run("mailbox", "export", INS_ACTIVE, "--out", str(enc), "--gpg-recipient", config.archive_recipient,
            config=cfg)
    assert p.returncode == 0, p.stderr
    assert b"Compte rendu" not in enc.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(_gpg_decrypt(config.gnupg_home, enc.read_bytes()))) as tar:
        assert "messages/INBOX/1.eml" in tar.getnames()
    one_line_error(run("mailbox", "export", INS_ACTIVE, "--out", str(tmp_path / "x"), "--gpg-recipient",
                       "nobody@example.org", config=cfg), "no GnuPG public key")
    assert not _agents_of(config.gnupg_home), "a gpg-agent outlived the export"


def test_close_archives_refuses_mail_and_purges(relay: RunningDaemon) -> None:
    import io
    import tarfile
    cfg = relay.base / "relay.toml"
    relay.deliver(message(subject="a garder dix ans"))
    relay.daemon.runtime.store._cache._ttl = 0  # type: ignore[union-attr]
    p = run("mailbox", "close", INS_ACTIVE, config=cfg)
    assert p.returncode == 0, p.stderr
    from relay.core.config import load_config
    config = load_config(cfg)
    archives = list(config.archive_dir.glob(f"{INS_ACTIVE}-*.tar.gpg"))
    assert len(archives) == 1
    with tarfile.open(fileobj=io.BytesIO(_gpg_decrypt(config.gnupg_home, archives[0].read_bytes()))) as tar:
        assert b"a garder dix ans" in tar.extractfile("messages/INBOX/1.eml").read()  # type: ignore[union-attr]
    shown = json.loads(run("mailbox", "show", INS_ACTIVE, "--json", config=cfg).stdout)
    assert shown["state"] == "closed" and all(f["messages"] == 0 for f in shown["folders"])
    with relay.smtp() as s:
        s.mail("dr.martin@test-operator.mssante.fr")
        assert s.rcpt(f"{INS_ACTIVE}@patient.mssante.fr")[0] == 550
    # ten years later, purge-expired deletes it (an archive dated 2015 stands in for it)
    old = config.archive_dir / f"{INS_ACTIVE}-20150101.tar.gpg"
    old.write_bytes(archives[0].read_bytes())
    p = run("mailbox", "purge-expired", config=cfg)
    assert p.returncode == 0 and old.name in p.stdout and not old.exists() and archives[0].exists()
    assert not _agents_of(config.gnupg_home), "a gpg-agent outlived the close"


def test_close_without_an_archive_key_is_refused(instance: Path) -> None:
    cfg = instance / "relay.toml"
    text = cfg.read_text()
    cfg.write_text(re.sub(r'gpg_recipient = "[^"]*"', 'gpg_recipient = ""', text))
    one_line_error(run("mailbox", "close", INS_ACTIVE, config=cfg), "archive.gpg_recipient")
    assert json.loads(run("mailbox", "show", INS_ACTIVE, "--json", config=cfg).stdout)["state"] == "active"
