#!/usr/bin/env python3
"""Hostile SMTP senders against a real daemon (issue 10 items 3, 5): what each gets,
how long the answer took, and the daemon's memory (VmHWM, VmRSS) after each.

  python bench/smtp_hostile.py [--data-timeout 5]

Also prints the per-call cost of the two checks added to every transaction: the
header scanner on an ordinary header section, and free_space() (statvfs) at MAIL.
Loopback only; every case is bounded in bytes and in time.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import smtplib
import socket
import ssl
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailbox_store.crypto import MasterKey  # noqa: E402
from mailbox_store.store import Store  # noqa: E402
from policy.headers import HeaderLimits, HeaderScanner  # noqa: E402
from policy.recipients import MailboxState  # noqa: E402
from relay.core.config import load_config  # noqa: E402
from relay.core.storefaults import free_space  # noqa: E402
from bench.instance import free_port, new_instance, start_daemon, stop_daemon  # noqa: E402

INS = "279035121518989"
RCPT = f"{INS}@patient.mssante.fr"
SENDER = "dr.martin@test-operator.mssante.fr"


def memory(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0]) // 1024  # MiB
    return out


def session(inst: Path, port: int) -> smtplib.SMTP:
    ctx = ssl.create_default_context(cafile=str(inst / "pki/ca.pem"))
    ctx.load_cert_chain(inst / "pki/operator.pem", inst / "pki/operator.key")
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="mail.test-operator.mssante.fr", timeout=120)
    s.starttls(context=ctx)
    s.ehlo()
    return s


def message(extra: bytes) -> bytes:
    return (b"From: <" + SENDER.encode() + b">\r\nTo: <" + RCPT.encode() + b">\r\nSubject: x\r\n" + extra +
            b"Message-ID: <h@test-operator.mssante.fr>\r\n\r\nBonjour.\r\n")


def send(inst: Path, port: int, raw: bytes) -> tuple[int, str]:
    with session(inst, port) as s:
        try:
            s.sendmail(SENDER, [RCPT], raw)
            return 250, "accepted"
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode()


def slowloris(inst: Path, port: int, give_up: float) -> tuple[int, str]:
    s = session(inst, port)
    s.mail(SENDER)
    s.rcpt(RCPT)
    s.putcmd("DATA")
    s.getreply()
    sock = s.sock
    sock.settimeout(1.0)
    deadline = time.monotonic() + give_up
    while time.monotonic() < deadline:
        sock.sendall(b"x")
        try:
            data = sock.recv(4096).decode()
            sock.close()
            return int(data[:3]), data[4:].strip()
        except socket.timeout:
            continue
    sock.close()
    return 0, "no answer"


def micro() -> dict[str, float]:
    head = b"".join(b"X-Field-%d: some ordinary value of a header field\r\n" % i for i in range(30)) + b"\r\n"
    n = 20_000
    t = time.perf_counter()
    for _ in range(n):
        HeaderScanner(HeaderLimits()).feed(head)
    scan_us = (time.perf_counter() - t) / n * 1e6
    return {"header_scan_30_fields_us": round(scan_us, 1), "header_bytes": len(head)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-timeout", type=float, default=5)
    args = ap.parse_args()
    port = free_port()
    cfg = new_instance("hostile-", mx=port, extra={"data_timeout = 600": f"data_timeout = {args.data_timeout}"})
    config = load_config(cfg)
    n = 20_000
    t = time.perf_counter()
    for _ in range(n):
        free_space(config)
    figures = {**micro(), "free_space_us": round((time.perf_counter() - t) / n * 1e6, 1)}

    async def seed() -> None:
        store = await Store.open(config.store_url, MasterKey.load(config.master_key))
        await store.create_mailbox(INS, MailboxState.ACTIVE)
        await store.close()

    asyncio.run(seed())
    daemon = start_daemon(cfg, port, stderr=open("/dev/null", "w"))  # noqa: SIM115
    inst = cfg.parent
    try:
        print(json.dumps({"case": "micro", **figures}))
        print(json.dumps({"case": "idle daemon", **memory(daemon.pid)}))
        cases = [
            ("ordinary message", lambda: send(inst, port, message(b""))),
            ("5 MB header line", lambda: send(inst, port, message(b"X-Big: " + b"x" * (5 << 20) + b"\r\n"))),
            ("100,000 header fields",
             lambda: send(inst, port, message(b"".join(b"X-F%d: v\r\n" % i for i in range(100_000))))),
            ("1 MB of folded lines in one field",
             lambda: send(inst, port, message(b"X-Fold: a\r\n" + b" b\r\n" * 350_000))),
            (f"one byte every second in DATA (data_timeout {args.data_timeout:g} s)",
             lambda: slowloris(inst, port, args.data_timeout * 4 + 30)),
        ]
        for name, run in cases:
            t = time.monotonic()
            code, text = run()
            print(json.dumps({"case": name, "code": code, "reply": text[:80],
                              "seconds": round(time.monotonic() - t, 2), **memory(daemon.pid)}))
    finally:
        stop_daemon(daemon)


if __name__ == "__main__":
    main()
