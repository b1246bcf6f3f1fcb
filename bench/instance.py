"""What every benchmark does to get a daemon: a fresh `mssante-relay init` instance on
free loopback ports, started as its own process, stopped with SIGTERM."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from relay.ops.instance import init_instance
from tests.ports import free_port  # below the ephemeral range the daemon's port-0 fronts use

__all__ = ["free_port", "new_instance", "start_daemon", "stop_daemon"]

ROOT = Path(__file__).resolve().parents[1]


def new_instance(prefix: str, mx: int = 0, imap: int = 0, imaps: int = 0, extra: dict[str, str] | None = None,
                 workdir: Path | None = None) -> Path:
    """A fresh instance whose listeners use the given ports (0: any free one), logging
    warnings only; extra replaces text of relay.toml. Returns the config path."""
    inst = (workdir or Path(tempfile.mkdtemp(prefix=prefix))) / "inst"
    init_instance(inst, force=True)
    cfg = inst / "relay.toml"
    text = (cfg.read_text().replace('listen = "127.0.0.1:2525"', f'listen = "127.0.0.1:{mx}"')
            .replace('listen = "127.0.0.1:2143"', f'listen = "127.0.0.1:{imap}"')
            .replace('listen_tls = "127.0.0.1:2993"', f'listen_tls = "127.0.0.1:{imaps}"')
            .replace('listen = "127.0.0.1:9325"', 'listen = "127.0.0.1:0"')
            .replace('level = "info"', 'level = "warning"'))
    for old, new in (extra or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text)
    return cfg


def start_daemon(cfg: Path, port: int, **popen: object) -> subprocess.Popen[str]:
    """`mssante-relay serve` on cfg; returns once port accepts connections (30 s at most)."""
    daemon = subprocess.Popen([sys.executable, "-m", "relay.cli", "serve", "--config", str(cfg)], cwd=ROOT,
                              text=True, **popen)  # type: ignore[call-overload]
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return daemon
        except OSError:
            if daemon.poll() is not None or time.monotonic() > deadline:
                err = daemon.stderr.read() if daemon.stderr else ""
                daemon.kill()
                sys.exit(f"daemon did not start: {err}")
            time.sleep(0.1)


def stop_daemon(daemon: subprocess.Popen[str]) -> str:
    """SIGTERM, then what it wrote on stderr (when piped)."""
    daemon.send_signal(signal.SIGTERM)
    try:
        _, err = daemon.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        _, err = daemon.communicate()
    return err or ""
