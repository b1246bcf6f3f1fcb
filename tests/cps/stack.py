"""A private PC/SC stack for the tests: Debian's pcscd with vsmartcard's vpcd reader driver,
and the virtual CPS card (virtual_cps.py) plugged into it.

pcsc-lite 1.9 (Debian 12) fixes its socket at /run/pcscd/pcscd.comm; the client library
honours $PCSCLITE_CSOCK_NAME. So pcscd runs in its own mount namespace where a private folder
is bound over /run/pcscd: its socket (and pid file) land in that folder, which the tests
name in PCSCLITE_CSOCK_NAME. Parallel runs never share a pcscd.

pcscd also runs in its own network namespace (only `lo`, up): vpcd listens for the virtual
card on a TCP port, which is thus reachable only from that namespace. The card is started
there with nsenter, so "insert" and "remove" are starting and stopping it.

Needs root (namespaces, bind mount), pcscd, vsmartcard-vpcd: run-tests.sh installs them.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_PORT = 35963  # vpcd's usual port; alone in its namespace, it clashes with nobody
CARD_SCRIPT = Path(__file__).with_name("virtual_cps.py")


def missing_prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "the PC/SC tests need root (network and mount namespaces for a private pcscd)"
    for tool in ("pcscd", "unshare", "nsenter", "ip", "mount"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is missing (run-tests.sh installs pcscd, vsmartcard-vpcd)"
    if not VPCD_DRIVER.exists():
        return f"{VPCD_DRIVER} is missing (apt-get install vsmartcard-vpcd)"
    return None


class PcscStack:
    """One pcscd; `with_reader=False` gives a pcscd with no reader at all."""

    def __init__(self, root: Path, with_reader: bool = True):
        self.root = root
        self.run_dir = root / "run"
        self.conf_dir = root / "reader.conf.d"
        self.log = root / "pcscd.log"
        self.with_reader = with_reader
        self.proc: subprocess.Popen[bytes] | None = None
        self.card: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.run_dir / "pcscd.comm"

    def env(self) -> dict[str, str]:
        return {**os.environ, "PCSCLITE_CSOCK_NAME": str(self.socket)}

    def start(self) -> "PcscStack":
        problem = missing_prerequisites()
        if problem:
            raise RuntimeError(problem)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        if self.with_reader:
            # DEVICENAME /dev/null:PORT = vpcd listens on PORT for a virtual card (vsmartcard docs)
            (self.conf_dir / "vpcd").write_text(
                'FRIENDLYNAME "Virtual PCD"\n'
                f"DEVICENAME   /dev/null:0x{VPCD_PORT:04X}\n"
                f"LIBPATH      {VPCD_DRIVER}\n"
                f"CHANNELID    0x{VPCD_PORT:04X}\n")
        Path("/run/pcscd").mkdir(parents=True, exist_ok=True)  # the mount point
        script = (f"ip link set lo up && mount --bind '{self.run_dir}' /run/pcscd && "
                  f"exec pcscd --foreground --config '{self.conf_dir}' --error")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["unshare", "--net", "--mount", "sh", "-c", script],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pcscd did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        return self

    def insert(self, key: Path, cert: Path, pin: str = "1234") -> None:
        """Start the virtual card inside pcscd's network namespace; wait until PC/SC sees it."""
        assert self.proc is not None and self.with_reader
        self.remove()
        netns = f"/proc/{self.proc.pid}/ns/net"
        self.card = subprocess.Popen(
            ["nsenter", f"--net={netns}", sys.executable, str(CARD_SCRIPT), "--port", str(VPCD_PORT),
             "--key", str(key), "--cert", str(cert), "--pin", pin],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "card.log", "ab"), start_new_session=True)
        self._wait_card(present=True)

    def remove(self) -> None:
        if self.card is not None:
            self.card.terminate()
            try:
                self.card.wait(10)
            except subprocess.TimeoutExpired:
                self.card.kill()
                self.card.wait(10)
            self.card = None
            self._wait_card(present=False)

    def _wait_card(self, present: bool) -> None:
        """Poll the reader's state through a separate process (the test process's own PC/SC
        client must not be the one that first sees a socket name it cannot change)."""
        probe = ("import sys\nfrom smartcard import scard as s\n"
                 "h, c = s.SCardEstablishContext(s.SCARD_SCOPE_USER)\n"
                 "h, rs = s.SCardGetStatusChange(c, 0, [('Virtual PCD 00 00', s.SCARD_STATE_UNAWARE)])\n"
                 "sys.exit(0 if h == 0 and rs[0][1] & s.SCARD_STATE_PRESENT else 1)\n")
        deadline = time.monotonic() + 30
        while True:
            rc = subprocess.run([sys.executable, "-c", probe], env=self.env(), capture_output=True).returncode
            if (rc == 0) == present:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the virtual card is still {'absent' if present else 'present'} after 30 s")
            time.sleep(0.2)

    def stop(self) -> None:
        self.remove()
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            self.proc = None
