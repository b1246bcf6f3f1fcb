"""Issue 16 §5: a failed TLS handshake on any front is one JSON event `tls.handshake_failed`
and a counter; nothing on stderr is a traceback. Run against `mssante-relay serve` as a
real process, with swaks, smtplib, imaplib and raw sockets."""
from __future__ import annotations

import json
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

CLI = [sys.executable, "-m", "relay.cli"]
FRONT_KEYS = {"mx": ("mx", "listen"), "imap": ("imap", "listen"), "imaps": ("imap", "listen_tls"),
              "submission": ("submission", "listen"), "submissions": ("submission", "listen_tls"),
              "web": ("web", "listen"), "admin": ("admin", "listen")}


class Serving:
    """`mssante-relay serve` on chosen free ports; stderr collected at the end."""

    def __init__(self, instance: Path):
        self.instance = instance
        self.ports = {front: free_port() for front in FRONT_KEYS}
        cfg = instance / "relay.toml"
        text = cfg.read_text()
        for front, (section, key) in FRONT_KEYS.items():
            start = text.index(f"[{section}]\n")
            at = text.index(f'{key} = "127.0.0.1:0"', start)
            text = text[:at] + f'{key} = "127.0.0.1:{self.ports[front]}"' + text[at + len(f'{key} = "127.0.0.1:0"'):]
        cfg.write_text(text)
        self.proc = subprocess.Popen([*CLI, "serve", "--config", str(cfg)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.ports["web"]), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.proc.communicate()
                time.sleep(0.1)
        raise AssertionError("daemon did not listen")

    def context(self, cert: str | None, tls12: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.instance / "pki/ca.pem"))
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if cert:
            ctx.load_cert_chain(self.instance / f"pki/{cert}.pem", self.instance / f"pki/{cert}.key")
        return ctx

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/metrics", timeout=30) as r:
            return r.read().decode()

    def stop(self) -> list[str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        return err.splitlines()


@pytest.fixture
def serving(instance: Path) -> Iterator[Serving]:
    s = Serving(instance)
    yield s
    if s.proc.poll() is None:
        s.stop()


def _events(lines: list[str], name: str) -> list[dict]:
    return [e for e in (json.loads(line) for line in lines) if e["event"] == name]


def _no_raw_output(lines: list[str]) -> None:
    for line in lines:
        assert "Traceback" not in line and "exception" not in line.lower(), line
        json.loads(line)  # every line one JSON event


def _wait_metric(s: Serving, needle: str) -> str:
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline:
        text = s.metrics()
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needle} not in /metrics:\n{text}")


def test_swaks_with_a_certificate_of_another_ca(serving: Serving) -> None:
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed")
    pki = serving.instance / "pki"
    for protocol in ("tlsv1_2", "tlsv1_3"):
        p = subprocess.run(["swaks", "--to", "279035121518989@patient.mssante.fr",
                            "--from", "doc@test-operator.mssante.fr",
                            "--server", f"127.0.0.1:{serving.ports['mx']}", "--tls", "--tls-protocol", protocol,
                            "--tls-ca-path", str(pki / "ca.pem"), "--tls-cert", str(pki / "untrusted.pem"),
                            "--tls-key", str(pki / "untrusted.key")],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode != 0, p.stdout  # nothing was delivered
    text = _wait_metric(serving, 'mssante_tls_handshake_failures_total{front="mx",reason="unknown_ca"} 2.0')
    assert text
    lines = serving.stop()
    _no_raw_output(lines)
    failed = _events(lines, "tls.handshake_failed")
    assert len(failed) == 2, failed
    assert {e["front"] for e in failed} == {"mx"}
    assert {e["reason"] for e in failed} == {"unknown_ca"}
    assert all(e["peer"] == "127.0.0.1" for e in failed)
    # TLS 1.2 sends the client certificate in clear: its subject and issuer are named
    named = [e for e in failed if "cert_issuer" in e]
    assert len(named) == 1
    assert "Untrusted TEST CA" in named[0]["cert_issuer"]
    assert "test-operator" in named[0]["cert_subject"]


def test_every_front_reports_a_failed_handshake(serving: Serving) -> None:
    # MX, STARTTLS with a certificate of another CA (TLS 1.3: no subject to show)
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        with smtplib.SMTP("127.0.0.1", serving.ports["mx"], timeout=30) as s:
            s.starttls(context=serving.context("untrusted"))
            s.ehlo()
            s.mail("doc@test-operator.mssante.fr")
    # submission and IMAP STARTTLS: bytes that are not TLS after the go-ahead
    for front, hello, go in (("submission", b"EHLO x\r\nSTARTTLS\r\n", b"Ready"),
                             ("imap", b"a STARTTLS\r\n", b"a OK")):
        with socket.create_connection(("127.0.0.1", serving.ports[front]), timeout=30) as raw:
            got = b""
            raw.sendall(hello)
            while go not in got:
                chunk = raw.recv(4096)
                assert chunk, got
                got += chunk
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
            raw.recv(4096)
    # implicit TLS: a client that does not trust our certificate (it has another CA)
    other_ca = ssl.create_default_context(cafile=str(serving.instance / "pki/untrusted.pem"))
    for front in ("imaps", "submissions", "web"):
        with socket.create_connection(("127.0.0.1", serving.ports[front]), timeout=30) as raw:
            with pytest.raises(ssl.SSLError):
                other_ca.wrap_socket(raw, server_hostname="localhost")
    _wait_metric(serving, 'mssante_tls_handshake_failures_total{front="web",reason="client_refused_certificate"}')
    text = _wait_metric(serving, 'front="imap",reason="not_tls"')
    for front, reason in (("mx", "unknown_ca"), ("submission", "not_tls"), ("imap", "not_tls"),
                          ("imaps", "client_refused_certificate"),
                          ("submissions", "client_refused_certificate")):
        assert f'mssante_tls_handshake_failures_total{{front="{front}",reason="{reason}"}} 1.0' in text, \
            (front, [line for line in text.splitlines() if "handshake" in line])
    lines = serving.stop()
    _no_raw_output(lines)
    assert {e["front"] for e in _events(lines, "tls.handshake_failed")} == \
        {"mx", "submission", "imap", "imaps", "submissions", "web"}
