"""systemd integration: the unit passes `systemd-analyze verify`, and the daemon speaks
the notify protocol (READY, RELOADING, STOPPING, WATCHDOG) on $NOTIFY_SOCKET."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_cli import CLI
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(ANALYZE is None and not os.environ.get("CI"), reason="systemd-analyze not installed")
def test_unit_verifies(tmp_path: Path) -> None:
    assert ANALYZE, "systemd-analyze must be installed in CI"
    unit = (ROOT / "config/mssante-relay.service").read_text()
    for needed in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict",
                   "NoNewPrivileges=yes", "PrivateTmp=yes", "ReadWritePaths=/var/lib/mssante-relay",
                   "AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                   "User=mssante-relay", "WatchdogSec="):
        assert needed in unit, needed
    # verify checks that ExecStart exists: point it at this environment's console script
    exe = Path(sys.executable).parent / "mssante-relay"
    assert exe.exists()
    local = tmp_path / "mssante-relay.service"
    local.write_text(unit.replace("/opt/mssante-relay/venv/bin/mssante-relay", str(exe)))
    p = subprocess.run([ANALYZE, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def _recv(sock: socket.socket, want: str, timeout: float = 20) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.1))
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen += msg.split("\n")
        if want in seen:
            return seen
    raise AssertionError(f"{want} not received; got {seen}")


def test_notify_protocol(instance: Path, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    cfg = instance / "relay.toml"
    cfg.write_text(cfg.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{free_port()}"', 1))
    env = dict(os.environ, NOTIFY_SOCKET=str(path), WATCHDOG_USEC="400000", MSSANTE_RELAY_CONFIG=str(cfg))
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([*CLI, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = _recv(sock, "READY=1")
        assert any(s.startswith("STATUS=MX on") for s in seen)
        _recv(sock, "WATCHDOG=1")
        proc.send_signal(signal.SIGHUP)
        seen = _recv(sock, "RELOADING=1")
        assert any(s.startswith("MONOTONIC_USEC=") for s in seen)
        seen = _recv(sock, "READY=1")
        assert "STATUS=configuration reloaded" in seen
        proc.send_signal(signal.SIGTERM)
        _recv(sock, "STOPPING=1")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
