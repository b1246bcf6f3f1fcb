"""The `mssante-relay` command line, run as a real process."""
from __future__ import annotations

import imaplib
import json
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import INS_ACTIVE, INS_UNKNOWN, SENDER, message
from tests.ports import free_port

CLI = [sys.executable, "-m", "relay.cli"]
RCPT = f"{INS_ACTIVE}@patient.mssante.fr"


def run(*args: str, config: Path | None = None, stdin: str | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("MSSANTE_RELAY_CONFIG", None)
    if config is not None:
        env["MSSANTE_RELAY_CONFIG"] = str(config)
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=60)


def one_line_error(p: subprocess.CompletedProcess[str], *words: str) -> None:
    assert p.returncode == 2, p
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("mssante-relay: error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_init_refuses_to_overwrite_keys(template_instance: Path, tmp_path: Path) -> None:
    d = tmp_path / "inst"
    p = run("init", str(d))
    assert p.returncode == 0, p.stderr
    for f in ("relay.toml", "trustlist.xml", "pki/ca.pem", "pki/server.pem", "pki/server.key",
              "pki/operator.pem", "pki/operator.key", "pki/untrusted.pem", "pki/untrusted.key",
              "keys/master.key"):
        assert (d / f).exists(), f
    key = (d / "keys/master.key").read_bytes()
    one_line_error(run("init", str(d)), "--force")
    assert (d / "keys/master.key").read_bytes() == key
    assert run("init", str(d), "--force").returncode == 0
    assert (d / "keys/master.key").read_bytes() != key


def test_mailbox_commands(instance: Path) -> None:
    cfg = instance / "relay.toml"
    new_ins = "185022B12345612"
    one_line_error(run("mailbox", "add", "185022B12345613", config=cfg), "key", "expected 12")
    one_line_error(run("mailbox", "add", new_ins, "--state", "frozen", config=cfg), "frozen", "pending|active")
    one_line_error(run("mailbox", "add", new_ins, "--notify-email", "not-an-address", config=cfg),
                   "--notify-email")
    one_line_error(run("mailbox", "add", new_ins, "--password-stdin", stdin="\n", config=cfg), "password")
    one_line_error(run("mailbox", "list"), "MSSANTE_RELAY_CONFIG")
    one_line_error(run("mailbox", "list", "--config", str(instance / "missing.toml")), "not found")
    one_line_error(run("mailbox", "show", INS_UNKNOWN, config=cfg), "no mailbox")
    one_line_error(run("mailbox", "set-state", INS_UNKNOWN, "active", config=cfg), "no mailbox")
    one_line_error(run("mailbox", "add", INS_ACTIVE, config=cfg), "already exists")

    p = run("mailbox", "add", new_ins.lower(), "--state", "active", "--password-stdin",
            "--notify-email", "jeanne@example.org", stdin="correct horse\n", config=cfg)
    assert p.returncode == 0, p.stderr
    shown = json.loads(run("mailbox", "show", new_ins, "--json", config=cfg).stdout)
    assert shown["state"] == "active" and shown["notify_email"] == "jeanne@example.org"
    assert [f["name"] for f in shown["folders"]] == ["INBOX", "Sent", "Drafts", "Trash", "Archive", "Dossier médical"]
    assert all(f["messages"] == 0 for f in shown["folders"])
    assert run("mailbox", "set-state", new_ins, "opposed", "--config", str(cfg)).returncode == 0
    listed = {m["ins"]: m["state"] for m in json.loads(run("mailbox", "list", "--json", config=cfg).stdout)}
    assert listed[new_ins] == "opposed" and listed[INS_ACTIVE] == "active"
    # the password is stored as an argon2id hash, never in clear
    db = (instance / "relay.db").read_bytes() + (instance / "relay.db-wal").read_bytes() \
        if (instance / "relay.db-wal").exists() else (instance / "relay.db").read_bytes()
    assert b"correct horse" not in db and b"$argon2id$" in db


class Served:
    def __init__(self, instance: Path):
        self.port = free_port()
        cfg = instance / "relay.toml"
        # the [mx] section comes first: only its listen address gets the chosen port
        cfg.write_text(cfg.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{self.port}"', 1))
        self.cfg = cfg
        self.instance = instance
        env = dict(os.environ, MSSANTE_RELAY_CONFIG=str(cfg))
        self.proc = subprocess.Popen([*CLI, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
                time.sleep(0.1)
        raise AssertionError("daemon did not listen")

    def smtp(self, cert: str = "operator") -> smtplib.SMTP:
        ctx = ssl.create_default_context(cafile=str(self.instance / "pki/ca.pem"))
        ctx.load_cert_chain(self.instance / f"pki/{cert}.pem", self.instance / f"pki/{cert}.key")
        s = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
        s.starttls(context=ctx)
        s.ehlo()
        return s

    def terminate(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err

    def inbox_count(self) -> int:
        shown = json.loads(run("mailbox", "show", INS_ACTIVE, "--json", config=self.cfg).stdout)
        return shown["folders"][0]["messages"]


def test_serve_delivers_and_stops_cleanly_on_sigterm(instance: Path) -> None:
    srv = Served(instance)
    try:
        with srv.smtp() as s:
            assert s.sendmail(SENDER, [RCPT], message()) == {}
    finally:
        code, err = srv.terminate()
    assert code == 0, err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "message.accepted" in events and events[-1] == "daemon.stopped"
    assert INS_ACTIVE not in err  # INS are hashed in logs
    assert srv.inbox_count() == 1


def test_sigterm_lets_a_transaction_in_flight_finish(instance: Path) -> None:
    srv = Served(instance)
    s = srv.smtp()
    s.mail(SENDER)
    s.rcpt(RCPT)
    code, _ = s.docmd("DATA")
    assert code == 354
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the daemon has stopped accepting, our session is still served
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    s.send(message().replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
    code, text = s.getreply()
    assert code == 250, text
    _, err = srv.proc.communicate(timeout=30)
    assert srv.proc.returncode == 0, err
    assert srv.inbox_count() == 1


def test_sighup_reloads_the_trust_list(instance: Path) -> None:
    srv = Served(instance)
    try:
        with srv.smtp("other") as s:
            assert s.mail("x@other-operator.mssante.fr")[0] == 550
        from cryptography import x509

        from certs.trustlist import render_trust_list
        subj = {n: x509.load_pem_x509_certificate((instance / f"pki/{n}.pem").read_bytes())
                .subject.rfc4514_string() for n in ("operator", "other")}
        (instance / "trustlist.xml").write_text(render_trust_list(
            [("test-operator.mssante.fr", "t", subj["operator"]),
             ("other-operator.mssante.fr", "o", subj["other"])], "2026-11-23T00:00:00Z"))
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        code = 0
        while time.monotonic() < deadline:
            with srv.smtp("other") as s:
                code = s.mail("x@other-operator.mssante.fr")[0]
            if code == 250:
                break
            time.sleep(0.2)
        assert code == 250
    finally:
        assert srv.terminate()[0] == 0


def test_serve_without_config_initialises_a_dev_instance(tmp_path: Path) -> None:
    for port in (2525, 2143, 2993, 9325, 8443):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port} (a development default) is in use on this machine")
    env = {k: v for k, v in os.environ.items() if k != "MSSANTE_RELAY_CONFIG"}
    # run from tmp_path, the checkout under test must still win over an editable install elsewhere
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([*CLI, "serve"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(12)]
        text = "".join(banner)
        assert "127.0.0.1:2525" in text and "279035121518989@patient.mssante.fr" in text
        # the admin port is named, and the stop line names Ctrl-C's real signal (SIGINT)
        assert "http://127.0.0.1:9325/" in text and "Ctrl-C (SIGINT)" in banner[-1]
        assert "operator.pem" in text
        assert (tmp_path / "mssante-dev/relay.toml").exists()
        password_file = tmp_path / "mssante-dev/demo-password"
        assert "demo-password" in text and oct(password_file.stat().st_mode & 0o777) == "0o600"
        # the newcomer can read the demo patient's mail with the printed details
        ctx = ssl.create_default_context(cafile=str(tmp_path / "mssante-dev/pki/ca.pem"))
        with imaplib.IMAP4_SSL("127.0.0.1", 2993, ssl_context=ctx, timeout=30) as imap:
            assert imap.login("279035121518989@patient.mssante.fr", password_file.read_text().strip())[0] == "OK"
            assert imap.select("INBOX")[0] == "OK"
        key = (tmp_path / "mssante-dev/keys/master.key").read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    # second run reuses the instance (same master key)
    proc = subprocess.Popen([*CLI, "serve"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert "mssante-relay is running" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends: a clean stop too
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert (tmp_path / "mssante-dev/keys/master.key").read_bytes() == key


def test_store_and_key_problems_are_one_line_errors(instance: Path, tmp_path: Path) -> None:
    cfg = instance / "relay.toml"
    key = instance / "keys/master.key"
    saved = key.read_bytes()
    key.unlink()
    one_line_error(run("mailbox", "list", config=cfg), "master key")
    key.write_text("not base64 at all!\n")
    one_line_error(run("mailbox", "list", config=cfg), "master key")
    key.write_bytes(saved)
    bad_store = tmp_path / "bad.toml"
    bad_store.write_text(cfg.read_text().replace('url = "sqlite+aiosqlite:///relay.db"',
                                                 f'url = "sqlite+aiosqlite:///{tmp_path}/no/such/dir/r.db"')
                         .replace('"pki/', f'"{instance}/pki/').replace('"keys/', f'"{instance}/keys/')
                         .replace('"trustlist.xml"', f'"{instance}/trustlist.xml"'))
    one_line_error(run("mailbox", "list", config=bad_store), "store")
    served = run("serve", config=bad_store)
    assert served.returncode == 2
    last = served.stderr.strip().splitlines()[-1]  # after the daemon's JSON log lines
    assert last.startswith("mssante-relay: error: cannot start") and "unable to open database" in last
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    one_line_error(run("init", str(a_file)), "cannot write instance")


def test_audit_command_shows_admin_actions_logins_and_reads(instance: Path) -> None:
    cfg = instance / "relay.toml"
    assert run("mailbox", "set-state", INS_ACTIVE, "opposed", config=cfg).returncode == 0
    assert run("mailbox", "set-state", INS_ACTIVE, "active", config=cfg).returncode == 0
    from tests.integration.conftest import RunningDaemon
    relay = RunningDaemon(cfg).start()
    try:
        relay.deliver(message())
        c = relay.imap()
        c.select("INBOX")
        c.fetch("1", "(BODY.PEEK[])")
        c.logout()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = json.loads(run("audit", INS_ACTIVE, "--json", config=cfg).stdout)
            if any(e["action"] == "message.read" for e in events):
                break
            time.sleep(0.1)
    finally:
        relay.stop()
    actions = [(e["actor"], e["action"], e["detail"]) for e in events]
    assert ("admin", "state", "opposed") in actions and ("admin", "state", "active") in actions
    assert any(a == ("patient", "login", "imap") for a in actions)
    assert any(e["action"] == "message.read" and e["source"] == "127.0.0.1" for e in events)
    text = run("audit", INS_ACTIVE, config=cfg).stdout
    assert "message.read" in text and "login" in text
    one_line_error(run("audit", INS_UNKNOWN, config=cfg), "no mailbox")
