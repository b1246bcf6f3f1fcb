"""Run the CLI as a real process with a real terminal (a pty as its controlling tty), the
way a professional types the PIN: getpass reads /dev/tty, never stdin or an argument."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    terminal: str  # what the program wrote on the terminal (the PIN prompt)


def _controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # runs after setsid (start_new_session)


def run_cli(args: list[str], env: dict[str, str], pin: str | None = None, timeout: float = 120) -> Run:
    """`python -m relay.cli ARGS`, its stdin a terminal; `pin` is typed at the first prompt."""
    master, slave = pty.openpty()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "relay.cli", *args], cwd=ROOT, env=env,
                                stdin=slave, stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=_controlling_tty)
        os.close(slave)
        seen, typed = b"", False
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(f"mssante-relay {' '.join(args)} did not finish in {timeout} s")
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # the child closed the terminal
                        chunk = b""
                    seen += chunk
                    if pin is not None and not typed and b"PIN" in seen:
                        os.write(master, pin.encode() + b"\n")
                        typed = True
            proc.wait(timeout)
        finally:
            os.close(master)
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                   seen.decode(errors="replace"))
