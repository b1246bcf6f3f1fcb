#!/usr/bin/env python3
"""IMAP FETCH benchmark: FETCH 1:* (FLAGS ENVELOPE) on a 10,000-message INBOX.

Fills one mailbox of a fresh instance through the store (the same encrypted path as
the MX), starts the daemon, then times, from a real client (imaplib over TLS), SELECT
and FETCH 1:* (FLAGS ENVELOPE), and checks that every message came back. Prints JSON.

  python bench/imap_fetch.py -n 10000
"""
from __future__ import annotations

import argparse
import asyncio
import imaplib
import json
import ssl
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402

from mailbox_store.crypto import MasterKey  # noqa: E402
from mailbox_store.store import Store  # noqa: E402
from policy.recipients import MailboxState  # noqa: E402
from relay.core.config import load_config  # noqa: E402
from bench.instance import free_port, new_instance, start_daemon, stop_daemon  # noqa: E402

INS = "279035121518989"
PASSWORD = "bench password"


def message(i: int) -> bytes:
    return (f"From: Dr Martin <dr.martin@test-operator.mssante.fr>\r\n"
            f"To: <{INS}@patient.mssante.fr>\r\nCc: secretariat@test-operator.mssante.fr\r\n"
            f"Subject: Compte rendu {i}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
            f"Message-ID: <bench-{i}@test-operator.mssante.fr>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + "Bonjour, voici le compte rendu.\r\n" * 40
            ).encode()


async def fill(cfg: Path, n: int) -> None:
    config = load_config(cfg)
    store = await Store.open(config.store_url, MasterKey.load(config.master_key))
    try:
        mb = await store.create_mailbox(INS, MailboxState.ACTIVE, PasswordHasher().hash(PASSWORD))
        for start in range(0, n, 200):
            await asyncio.gather(*(store.deliver([mb], message(i)) for i in range(start, min(start + 200, n))))
    finally:
        await store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--messages", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    port = free_port()
    cfg = new_instance("mssante-imapbench-", imaps=port)
    inst = cfg.parent
    t0 = time.perf_counter()
    asyncio.run(fill(cfg, a.messages))
    fill_s = time.perf_counter() - t0
    daemon = start_daemon(cfg, port)
    try:
        ctx = ssl.create_default_context(cafile=str(inst / "pki/ca.pem"))
        runs = []
        for _ in range(a.runs):
            c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=120)
            c.login(INS, PASSWORD)
            t1 = time.perf_counter()
            typ, data = c.select("INBOX", readonly=True)
            t2 = time.perf_counter()
            typ, data = c.fetch("1:*", "(FLAGS ENVELOPE)")
            t3 = time.perf_counter()
            got = sum(1 for d in data if d and (d if isinstance(d, bytes) else d[0]).find(b"ENVELOPE") >= 0)
            c.logout()
            runs.append({"select_s": round(t2 - t1, 3), "fetch_s": round(t3 - t2, 3), "messages": got})
        rss = None
        for line in Path(f"/proc/{daemon.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) // 1024
    finally:
        stop_daemon(daemon)
    fetch = sorted(r["fetch_s"] for r in runs)
    out = {"bench": "imap_fetch", "messages": a.messages, "fill_s": round(fill_s, 1), "runs": runs,
           "fetch_median_s": fetch[len(fetch) // 2], "all_returned": all(r["messages"] == a.messages for r in runs),
           "daemon_peak_rss_mib": rss}
    print(json.dumps(out))
    return 0 if out["all_returned"] else 1


if __name__ == "__main__":
    sys.exit(main())
