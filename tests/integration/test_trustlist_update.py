"""`mssante-relay trustlist update` (issue 16 §3) against a local HTTPS server on
loopback, with a running daemon reloading the new list; failures keep the old one."""
from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from certs.trustlist import render_trust_list
from tests.integration.test_cli import run
from tests.integration.test_tls_events import Serving

ROOT = Path(__file__).resolve().parents[2]


class Published:
    """An HTTPS server on 127.0.0.1 (the instance's server certificate) serving a folder."""

    def __init__(self, instance: Path, folder: Path):
        folder.mkdir()
        self.folder = folder
        handler = lambda *a, **k: _Quiet(*a, directory=str(folder), **k)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(instance / "pki/server.pem", instance / "pki/server.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/liste-blanche.xml"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, text: str, digest: str | None = "auto") -> None:
        (self.folder / "liste-blanche.xml").write_text(text)
        sidecar = self.folder / "liste-blanche.xml.sha256"
        if digest is None:
            sidecar.unlink(missing_ok=True)
        else:
            value = hashlib.sha256(text.encode()).hexdigest() if digest == "auto" else digest
            sidecar.write_text(f"{value}  liste-blanche.xml\n")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def published(instance: Path, tmp_path: Path) -> Iterator[Published]:
    p = Published(instance, tmp_path / "www")
    cfg = instance / "relay.toml"
    cfg.write_text(cfg.read_text().replace('url = ""\nfetch_ca = ""', f'url = "{p.url}"\nfetch_ca = "pki/ca.pem"'))
    yield p
    p.close()


def _subjects(instance: Path) -> dict[str, str]:
    return {n: x509.load_pem_x509_certificate((instance / f"pki/{n}.pem").read_bytes()).subject.rfc4514_string()
            for n in ("operator", "other")}


def _two_operators(instance: Path) -> str:
    s = _subjects(instance)
    return render_trust_list([("test-operator.mssante.fr", "t", s["operator"]),
                              ("other-operator.mssante.fr", "o", s["other"])], "2026-12-01T00:00:00Z")


def _other_accepted(serving: Serving) -> bool:
    with smtplib.SMTP("127.0.0.1", serving.ports["mx"], timeout=30) as s:
        s.starttls(context=serving.context("other"))
        s.ehlo()
        return s.mail("x@other-operator.mssante.fr")[0] == 250


def test_update_installs_the_list_and_the_daemon_reloads_it(instance: Path, published: Published) -> None:
    serving = Serving(instance)
    try:
        assert not _other_accepted(serving)
        published.publish(_two_operators(instance))
        p = run("trustlist", "update", "--config", str(instance / "relay.toml"))
        assert p.returncode == 0, p.stderr
        assert "trust list installed" in p.stdout and "2 domains" in p.stdout and "digest checked" in p.stdout
        assert f"PID {serving.proc.pid}" in p.stdout
        assert (instance / "trustlist.xml").read_text() == _two_operators(instance)
        digest = hashlib.sha256((instance / "trustlist.xml").read_bytes()).hexdigest()
        assert (instance / "trustlist.xml.sha256").read_text().split()[0] == digest
        deadline = time.monotonic() + 30
        while not _other_accepted(serving):
            assert time.monotonic() < deadline, "the daemon did not reload the new list"
            time.sleep(0.2)
        # the same list again: nothing to do, the daemon is not signalled
        p = run("trustlist", "update", "--config", str(instance / "relay.toml"))
        assert p.returncode == 0 and "unchanged" in p.stdout and "PID" not in p.stdout
    finally:
        lines = serving.stop()
    events = [line for line in lines if '"trustlist.loaded"' in line]
    assert len(events) == 2  # at start, then at the one reload
    assert not [line for line in lines if "reload.failed" in line or "Traceback" in line]


@pytest.mark.parametrize("case", ["digest_mismatch", "truncated", "not_xml_list", "missing", "required_digest",
                                  "untrusted_server", "plain_http"])
def test_a_failed_update_keeps_the_old_list(instance: Path, published: Published, case: str) -> None:
    cfg = instance / "relay.toml"
    before = (instance / "trustlist.xml").read_bytes()
    good = _two_operators(instance)
    args = ["trustlist", "update", "--config", str(cfg)]
    if case == "digest_mismatch":
        published.publish(good, digest="0" * 64)
        reason = "does not match"
    elif case == "truncated":
        published.publish(good[: len(good) // 2])
        reason = "the new list is refused"
    elif case == "not_xml_list":
        published.publish("<html>maintenance</html>")
        reason = "the new list is refused"
    elif case == "missing":
        reason = "HTTP 404"
    elif case == "required_digest":
        cfg.write_text(cfg.read_text().replace("require_digest = false", "require_digest = true"))
        published.publish(good, digest=None)
        reason = "not published"
    elif case == "untrusted_server":
        cfg.write_text(cfg.read_text().replace('fetch_ca = "pki/ca.pem"', 'fetch_ca = "pki/untrusted-ca.pem"'))
        published.publish(good)
        reason = "certificate"
    else:
        args += ["--url", published.url.replace("https://", "http://")]
        reason = "only https:// URLs"
    p = run(*args)
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mssante-relay: error: trustlist update: "), p.stderr
    assert reason in lines[0] and "previous list is kept" in lines[0]
    assert (instance / "trustlist.xml").read_bytes() == before
    assert not list(instance.glob("*.new"))


def test_update_from_a_file_without_a_daemon(instance: Path, tmp_path: Path) -> None:
    cfg = instance / "relay.toml"
    src = tmp_path / "downloaded.xml"
    src.write_text(_two_operators(instance))
    p = run("trustlist", "update", "--file", str(src), config=cfg)
    assert p.returncode == 0, p.stderr
    assert "no digest published" in p.stdout and "no running daemon" in p.stdout
    assert (instance / "trustlist.xml").read_text() == src.read_text()
    assert oct((instance / "trustlist.xml").stat().st_mode & 0o777) == "0o644"
    # a digest beside the file is checked
    (tmp_path / "downloaded.xml.sha256").write_text("f" * 64 + "\n")
    src.write_text(_two_operators(instance).replace("2026-12-01", "2026-12-02"))
    p = run("trustlist", "update", "--file", str(src), config=cfg)
    assert p.returncode == 1 and "does not match" in p.stderr
    assert "2026-12-01" in (instance / "trustlist.xml").read_text()


def test_without_a_source_the_command_says_what_to_set(instance: Path) -> None:
    p = run("trustlist", "update", config=instance / "relay.toml")
    assert p.returncode == 1 and "trust_list.url" in p.stderr and "--url or --file" in p.stderr


def test_trust_list_url_must_be_https(instance: Path) -> None:
    cfg = instance / "relay.toml"
    cfg.write_text(cfg.read_text().replace('url = ""\nfetch_ca', 'url = "http://example.org/l.xml"\nfetch_ca'))
    p = run("config", "check", config=cfg)
    assert p.returncode == 2 and "trust_list.url: expected an https:// URL" in p.stderr


ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(ANALYZE is None and not os.environ.get("CI"), reason="systemd-analyze not installed")
def test_timer_and_service_units_verify(tmp_path: Path) -> None:
    assert ANALYZE
    service = (ROOT / "config/mssante-relay-trustlist.service").read_text()
    timer = (ROOT / "config/mssante-relay-trustlist.timer").read_text()
    for needed in ("Type=oneshot", "User=mssante-relay", "trustlist update", "ProtectSystem=strict"):
        assert needed in service, needed
    assert "OnCalendar=daily" in timer and "Persistent=true" in timer
    exe = Path(sys.executable).parent / "mssante-relay"
    (tmp_path / "mssante-relay-trustlist.service").write_text(
        service.replace("/opt/mssante-relay/venv/bin/mssante-relay", str(exe)))
    (tmp_path / "mssante-relay-trustlist.timer").write_text(timer)
    p = subprocess.run([ANALYZE, "verify", str(tmp_path / "mssante-relay-trustlist.timer"),
                        str(tmp_path / "mssante-relay-trustlist.service")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
