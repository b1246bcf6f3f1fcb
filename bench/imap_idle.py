#!/usr/bin/env python3
"""IMAP IDLE benchmark: S concurrent authenticated IDLE sessions against one daemon.

M mailboxes, S/M sessions each, all in IDLE on INBOX over TLS (a light asyncio client,
so the load generator itself stays small). Then one message with M recipients goes in
through the MX (smtplib, operator certificate): every session must see "* n EXISTS".
Prints the daemon's RSS with every session idle, and the delay between the MX's 250
and each session's EXISTS (p50, p99, max), as JSON. Loopback only, bounded in time.

Logins use a cheap argon2 setting (time_cost=1) for the benchmark's own mailboxes, so
that the figure measures IDLE, not 2,000 password checks.

  python bench/imap_idle.py -s 2000 -m 100
  python bench/imap_idle.py -s 10000 -m 100 --spy /tmp/fanout.txt   # with a py-spy profile of the wake-up
"""
from __future__ import annotations

import argparse
import asyncio
import asyncio.sslproto
import json
import resource
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402

from bench.smtp_inbound import make_rcpts  # noqa: E402
from mailbox_store.crypto import MasterKey  # noqa: E402
from mailbox_store.store import Store  # noqa: E402
from policy.recipients import MailboxState  # noqa: E402
from relay.core.config import load_config  # noqa: E402
from bench.instance import free_port, new_instance, start_daemon, stop_daemon  # noqa: E402

PASSWORD = "bench password"


async def create(cfg: Path, rcpts: list[str]) -> None:
    config = load_config(cfg)
    store = await Store.open(config.store_url, MasterKey.load(config.master_key))
    cheap = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    try:
        for ins in rcpts:
            await store.create_mailbox(ins, MailboxState.ACTIVE, cheap)
    finally:
        await store.close()


class Idler:
    def __init__(self, ins: str):
        self.ins = ins
        self.exists_at: float | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self, port: int, ctx: ssl.SSLContext) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        self.writer = writer
        await reader.readline()
        for tag, cmd in ((b"a", f'LOGIN {self.ins} "{PASSWORD}"'.encode()), (b"b", b"SELECT INBOX")):
            writer.write(tag + b" " + cmd + b"\r\n")
            while True:
                line = await reader.readline()
                if not line:
                    raise ConnectionError("closed during " + cmd.decode())
                if line.startswith(tag + b" "):
                    if not line.startswith(tag + b" OK"):
                        raise RuntimeError(line.decode())
                    break
        writer.write(b"c IDLE\r\n")
        assert (await reader.readline()).startswith(b"+")
        self.reader = reader

    async def wait_exists(self) -> None:
        while True:
            line = await self.reader.readline()
            if not line:
                return
            if line.endswith(b"EXISTS\r\n"):
                self.exists_at = time.monotonic()
                return

    async def done(self) -> None:
        assert self.writer is not None
        try:
            self.writer.write(b"DONE\r\nz LOGOUT\r\n")
            await self.writer.drain()
            self.writer.close()
        except (ConnectionError, ssl.SSLError):
            pass


def rss_mib(pid: int, key: str = "VmRSS:") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)]


async def run(a: argparse.Namespace, inst: Path, imap_port: int, mx_port: int, pid: int) -> dict:
    rcpts = make_rcpts(a.mailboxes)
    # the load generator's own TLS read buffers: 256 KiB each otherwise (relay/imap/tlsbuffer.py)
    asyncio.sslproto.SSLProtocol.max_size = 18 * 1024
    ctx = ssl.create_default_context(cafile=str(inst / "pki/ca.pem"))
    idlers = [Idler(rcpts[i % a.mailboxes]) for i in range(a.sessions)]
    t0 = time.monotonic()
    sem = asyncio.Semaphore(64)  # bounded connection ramp

    async def start(i: Idler) -> None:
        async with sem:
            await i.start(imap_port, ctx)

    await asyncio.wait_for(asyncio.gather(*(start(i) for i in idlers)), a.timeout)
    ramp = time.monotonic() - t0
    await asyncio.sleep(1)
    rss_idle = rss_mib(pid)
    waits = [asyncio.create_task(i.wait_exists()) for i in idlers]

    def deliver() -> float:
        c = ssl.create_default_context(cafile=str(inst / "pki/ca.pem"))
        c.load_cert_chain(inst / "pki/operator.pem", inst / "pki/operator.key")
        with smtplib.SMTP("127.0.0.1", mx_port, local_hostname="mail.test-operator.mssante.fr", timeout=60) as s:
            s.starttls(context=c)
            s.ehlo()
            msg = (b"From: <bench@test-operator.mssante.fr>\r\nSubject: idle bench\r\n"
                   b"Message-ID: <idle-bench@test-operator.mssante.fr>\r\n\r\nBonjour\r\n")
            refused = s.sendmail("bench@test-operator.mssante.fr", [f"{r}@patient.mssante.fr" for r in rcpts], msg)
            assert not refused, refused
            return time.monotonic()

    spy = None
    if a.spy:  # a profile of the daemon during the fan-out (py-spy, collapsed stacks)
        spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--duration", str(a.spy_seconds),
                                "--format", "raw", "--rate", "50", "-o", a.spy],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(1)
    acked = await asyncio.to_thread(deliver)
    await asyncio.wait(waits, timeout=a.timeout)
    delays = [max(i.exists_at - acked, 0.0) for i in idlers if i.exists_at is not None]
    rss_peak = rss_mib(pid, "VmHWM:")
    if spy is not None:
        await asyncio.to_thread(spy.wait, 120)
    await asyncio.gather(*(i.done() for i in idlers), return_exceptions=True)
    return {"bench": "imap_idle", "sessions": a.sessions, "mailboxes": a.mailboxes, "ramp_s": round(ramp, 1),
            "daemon_rss_idle_mib": rss_idle, "daemon_peak_rss_mib": rss_peak,
            "woken": len(delays), "p50_ms": round(percentile(delays, 0.5) * 1000, 1) if delays else None,
            "p99_ms": round(percentile(delays, 0.99) * 1000, 1) if delays else None,
            "max_ms": round(max(delays) * 1000, 1) if delays else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-s", "--sessions", type=int, default=2000)
    ap.add_argument("-m", "--mailboxes", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--spy", default="", help="write a py-spy profile (collapsed stacks) of the fan-out here")
    ap.add_argument("--spy-seconds", type=int, default=15)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * a.sessions + 256)), hard))
    imap_port, mx_port = free_port(), free_port()
    per_account = -(-a.sessions // a.mailboxes)
    cfg = new_instance("mssante-idlebench-", mx=mx_port, imaps=imap_port, extra={
        "max_sessions_per_ip = 50\nmax_sessions_per_account = 20":
            f"max_sessions_per_ip = {a.sessions + 10}\nmax_sessions_per_account = {per_account}"})
    inst = cfg.parent
    asyncio.run(create(cfg, make_rcpts(a.mailboxes)))
    daemon = start_daemon(cfg, imap_port)
    try:
        out = asyncio.run(run(a, inst, imap_port, mx_port, daemon.pid))
    finally:
        stop_daemon(daemon)
    print(json.dumps(out))
    return 0 if out["woken"] == a.sessions else 1


if __name__ == "__main__":
    sys.exit(main())
