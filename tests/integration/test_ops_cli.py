"""`mssante-relay config check`, and a misspelt key stopping `serve` (issue 16 §4), run as real processes."""
from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import one_line_error, run


def test_config_check_prints_the_effective_configuration(instance: Path) -> None:
    cfg = instance / "relay.toml"
    p = run("config", "check", "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["path"] == str(cfg.resolve())
    assert out["max_recipients"] == 100
    assert out["tls_cert"] == str(cfg.resolve().parent / "pki/server.pem")  # resolved paths
    assert out["auth"]["hash_threads"] == 2 and out["attachments"]["max_parts"] == 100
    assert p.stderr == ""


def test_config_check_elides_the_store_password(instance: Path) -> None:
    cfg = instance / "relay.toml"
    cfg.write_text(cfg.read_text().replace('url = "sqlite+aiosqlite:///relay.db"',
                                           'url = "postgresql+asyncpg://relay:s3cret@db/relay"'))
    p = run("config", "check", config=cfg)  # $MSSANTE_RELAY_CONFIG works as --config does
    assert p.returncode == 0, p.stderr
    assert "s3cret" not in p.stdout
    assert json.loads(p.stdout)["store_url"] == "postgresql+asyncpg://relay:***@db/relay"


def test_config_check_refuses_a_typo(instance: Path) -> None:
    cfg = instance / "relay.toml"
    cfg.write_text(cfg.read_text().replace("[imap]\n", "[imap]\nmax_sesions_per_ip = 3\n"))
    p = run("config", "check", "--config", str(cfg))
    one_line_error(p, "relay.toml: [imap] max_sesions_per_ip: unknown key (did you mean max_sessions_per_ip?)")
    assert p.stdout == ""


def test_serve_refuses_to_start_with_a_misspelt_key(instance: Path) -> None:
    cfg = instance / "relay.toml"
    cfg.write_text(cfg.read_text().replace("max_recipients = 100", "max_recipents = 100"))
    p = run("serve", "--config", str(cfg))
    one_line_error(p, "[mx] max_recipents: unknown key (did you mean max_recipients?)")
    assert "Traceback" not in p.stderr
