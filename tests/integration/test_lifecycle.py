"""Mailbox lifecycle commands: activation code, opposition, majority, stale mailboxes."""
from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from pathlib import Path

from tests.integration.conftest import INS_ACTIVE, INS_PENDING, RunningDaemon, message
from tests.integration.test_cli import one_line_error, run

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
    con = sqlite3.connect(instance / "relay.db")
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)).isoformat(sep=" ")
    recent = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).isoformat(sep=" ")
    con.execute("UPDATE mailboxes SET created_at = ?", (old,))
    con.execute("UPDATE mailboxes SET last_login_at = ? WHERE ins = ?", (recent, INS_ACTIVE))
    con.execute("UPDATE mailboxes SET last_login_at = ? WHERE ins = ?", (old, INS_PENDING))
    con.commit()
    con.close()
    rows = {r["ins"]: r for r in json.loads(run("mailbox", "stale", "--json", config=cfg).stdout)}
    assert INS_ACTIVE not in rows and INS_PENDING in rows and rows[INS_PENDING]["last_login"]
    assert any(r["last_login"] is None for r in rows.values())  # never logged in, created long ago
    assert "postmaster" not in rows
    one_line_error(run("mailbox", "stale", "--days", "0", config=cfg), "--days")
