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


def test_config_check_refuses_a_store_password_in_the_url(instance: Path) -> None:
    cfg = instance / "relay.toml"
    cfg.write_text(cfg.read_text().replace('url = "sqlite+aiosqlite:///relay.db"',
                                           'url = "postgresql+asyncpg://relay:s3cret@db/relay"'))
    p = run("config", "check", config=cfg)  # $MSSANTE_RELAY_CONFIG works as --config does
    one_line_error(p, "store.url: a password does not belong in the URL")
    assert "s3cret" not in p.stdout + p.stderr


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


def _on_a_terminal(args: list[str], cfg: Path) -> tuple[int, str]:
    """Run the CLI with its standard output on a pseudo-terminal; what the terminal got."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", MSSANTE_RELAY_CONFIG=str(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "relay.cli", *args], stdout=follower,
                            stderr=subprocess.PIPE, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    return proc.returncode, out.decode(errors="replace")


def test_long_commands_show_progress_on_a_terminal_only(instance: Path, tmp_path: Path) -> None:
    from tests.integration.conftest import INS_ACTIVE

    cfg = instance / "relay.toml"
    _, shown = _on_a_terminal(["mailbox", "export", INS_ACTIVE, "--out", str(tmp_path / "t.tar")], cfg)
    assert f"export {INS_ACTIVE}" in shown  # the bar's description, drawn then erased
    assert "\x1b[" in shown and "messages exported to" in shown
    _, shown = _on_a_terminal(["backup", "--out", str(tmp_path / "b.tar")], cfg)
    assert "backup (one consistent snapshot)" in shown and "backup written to" in shown
    # piped: only the result line
    p = run("mailbox", "export", INS_ACTIVE, "--out", str(tmp_path / "p.tar"), config=cfg)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [p.stdout.strip()] and "\x1b" not in p.stdout
    p = run("backup", "--out", str(tmp_path / "p2.tar"), config=cfg)
    assert p.returncode == 0 and "\x1b" not in p.stdout and len(p.stdout.splitlines()) == 1
