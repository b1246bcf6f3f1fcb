"""Issue 16 §6: every administrative action on a mailbox is in its audit log, shown by
`mssante-relay audit INS` (the CLI as a real process, the daemon not running)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from tests.integration.conftest import INS_ACTIVE
from tests.integration.test_cli import one_line_error, run

NEW = "160017512300140"  # INS_UNKNOWN in the fixtures: no mailbox yet


def _audit(cfg: Path, ins: str) -> list[tuple[str, str, str]]:
    p = run("audit", ins, "--json", config=cfg)
    assert p.returncode == 0, p.stderr
    return [(e["actor"], e["action"], e["detail"]) for e in json.loads(p.stdout)]


def test_every_administrative_action_is_audited(instance: Path, tmp_path: Path) -> None:
    cfg = instance / "relay.toml"
    p = run("mailbox", "add", NEW, "--password-stdin", "--notify-email", "patient@example.org",
            stdin="first password\n", config=cfg)
    assert p.returncode == 0, p.stderr
    code = re.search(r"activation code: (\S+)", p.stdout).group(1)  # type: ignore[union-attr]
    assert _audit(cfg, NEW) == [("admin", "mailbox.create", "state pending"), ("admin", "password", "set"),
                                ("admin", "notify_email", "set"),
                                ("admin", "activation_code.issued", "one-time code, only its hash kept")]
    one_line_error(run("mailbox", "activate", NEW, "--code", "AAAAA-AAAAA", config=cfg), "does not match")
    assert run("mailbox", "activate", NEW, "--code", code, config=cfg).returncode == 0
    assert run("mailbox", "passwd", NEW, stdin="second password\n", config=cfg).returncode == 0
    assert run("mailbox", "notify", NEW, "--off", config=cfg).returncode == 0
    assert run("mailbox", "guardian", "add", NEW, INS_ACTIVE, config=cfg).returncode == 0
    assert run("mailbox", "guardian", "remove", NEW, INS_ACTIVE, config=cfg).returncode == 0
    assert run("pharmacy", "allow", NEW, "officine@test-operator.mssante.fr", config=cfg).returncode == 0
    assert run("pharmacy", "revoke", NEW, "officine@test-operator.mssante.fr", config=cfg).returncode == 0
    assert run("mailbox", "oppose", NEW, config=cfg).returncode == 0
    assert run("mailbox", "set-state", NEW, "active", config=cfg).returncode == 0
    assert run("mailbox", "export", NEW, "--out", str(tmp_path / "export.tar"), config=cfg).returncode == 0
    p = run("mailbox", "close", NEW, config=cfg)
    assert p.returncode == 0, p.stderr
    actions = [a for _, a, _ in _audit(cfg, NEW)]
    for wanted in ("mailbox.create", "activation_code.issued", "activation_code.refused", "activate",
                   "password", "notify_email", "guardian.add", "guardian.remove", "pharmacy.allow",
                   "pharmacy.revoke", "state", "export", "close"):
        assert wanted in actions, (wanted, actions)
    events = _audit(cfg, NEW)
    assert ("patient", "activate", "activation code used") in events
    assert ("admin", "password", "changed") in events and ("admin", "notify_email", "removed") in events
    assert [d for _, a, d in events if a == "state"][:3] == ["opposed", "active", "closed"]
    # never a secret in the log
    text = run("audit", NEW, config=cfg).stdout
    assert code not in text and "first password" not in text and "$argon2" not in text
    assert "mailbox.create" in text


def test_a_mailbox_created_active_says_so(instance: Path) -> None:
    cfg = instance / "relay.toml"
    assert run("mailbox", "add", NEW, "--state", "active", config=cfg).returncode == 0
    assert _audit(cfg, NEW) == [("admin", "mailbox.create", "state active")]
