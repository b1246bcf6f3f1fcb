#!/usr/bin/env python3
"""Logins must not starve sessions (issue 12 §3): the command latency of IMAP sessions
already logged in, alone and while LOGINs arrive at a steady rate.

A fresh daemon (its [auth] hash_threads: argon2 runs on the authenticator's own pool,
relay/auth/login.py), one mailbox with a production-cost argon2id hash. S sessions log in,
select INBOX, then loop NOOP / STATUS INBOX (MESSAGES UNSEEN) / FETCH 1:* (FLAGS) for D
seconds while their latency is recorded; first with no logins (baseline), then with R
new connections a second each doing LOGIN + LOGOUT over implicit TLS (the login
phase). Prints JSON: p50/p99/max of the sessions' commands in both phases, the logins
done and their p50. Loopback only; every loop is bounded by D.

  unshare -n bash -c 'ip link set lo up; python bench/imap_login_load.py -r 20 -d 15'
"""
from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402

from bench.instance import free_port, new_instance, start_daemon, stop_daemon  # noqa: E402
from mailbox_store.crypto import MasterKey  # noqa: E402
from mailbox_store.store import Store  # noqa: E402
from policy.recipients import MailboxState  # noqa: E402
from relay.core.config import load_config  # noqa: E402

INS = "279035121518989"
PASSWORD = "bench password"


async def fill(cfg: Path, n: int) -> None:
    config = load_config(cfg)
    store = await Store.open(config.store_url, MasterKey.load(config.master_key))
    try:
        mb = await store.create_mailbox(INS, MailboxState.ACTIVE, PasswordHasher().hash(PASSWORD))
        for i in range(n):
            await store.deliver([mb], f"Subject: m{i}\r\nFrom: a@b.fr\r\n\r\nbody {i}\r\n".encode())
    finally:
        await store.close()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.r, self.w, self.n = reader, writer, 0

    async def cmd(self, text: str) -> bytes:
        self.n += 1
        tag = b"t%d" % self.n
        self.w.write(tag + b" " + text.encode() + b"\r\n")
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("closed")
            if line.startswith(tag + b" "):
                return line


async def connect(port: int, ctx: ssl.SSLContext) -> Client:
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, limit=1 << 20)
    await r.readline()  # greeting
    return Client(r, w)


async def session_loop(port: int, ctx: ssl.SSLContext, until: float, lat: list[float]) -> None:
    c = await connect(port, ctx)
    assert (await c.cmd(f'LOGIN {INS} "{PASSWORD}"')).split()[1] == b"OK"
    await c.cmd("SELECT INBOX")
    cmds = ["NOOP", "STATUS INBOX (MESSAGES UNSEEN)", "FETCH 1:* (FLAGS)"]
    i = 0
    while time.monotonic() < until:
        t = time.perf_counter()
        await c.cmd(cmds[i % len(cmds)])
        lat.append(time.perf_counter() - t)
        i += 1
        await asyncio.sleep(0.01)
    await c.cmd("LOGOUT")
    c.w.close()


async def one_login(port: int, ctx: ssl.SSLContext, done: list[float]) -> None:
    t = time.perf_counter()
    c = await connect(port, ctx)
    ok = (await c.cmd(f'LOGIN {INS} "{PASSWORD}"')).split()[1] == b"OK"
    await c.cmd("LOGOUT")
    c.w.close()
    if ok:
        done.append(time.perf_counter() - t)


async def phase(port: int, ctx: ssl.SSLContext, sessions: int, secs: float, rate: float) -> dict[str, object]:
    until = time.monotonic() + secs
    lat: list[float] = []
    logins: list[float] = []
    loops = [asyncio.create_task(session_loop(port, ctx, until, lat)) for _ in range(sessions)]
    await asyncio.sleep(1.0)  # sessions logged in before the measured logins start
    lat.clear()
    started: list[asyncio.Task[None]] = []
    if rate > 0:
        t0 = time.monotonic()
        k = 0
        while time.monotonic() < until - 1 and k < int(rate * secs):  # bounded in count and time
            started.append(asyncio.create_task(one_login(port, ctx, logins)))
            k += 1
            await asyncio.sleep(max(0.0, t0 + k / rate - time.monotonic()))
    await asyncio.gather(*loops)
    await asyncio.wait_for(asyncio.gather(*started, return_exceptions=True), 120)
    ms = sorted(x * 1000 for x in lat)
    out: dict[str, object] = {"commands": len(ms), "p50_ms": round(ms[len(ms) // 2], 1),
                              "p99_ms": round(ms[int(len(ms) * 0.99)], 1), "max_ms": round(ms[-1], 1)}
    if rate > 0:
        out.update(logins_asked=len(started), logins_ok=len(logins),
                   login_p50_ms=round(statistics.median(logins) * 1000, 1) if logins else None)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-s", "--sessions", type=int, default=10)
    ap.add_argument("-r", "--rate", type=float, default=20.0, help="logins a second in the second phase")
    ap.add_argument("-d", "--seconds", type=float, default=15.0)
    a = ap.parse_args()
    port = free_port()
    # the per-IP and per-account session caps and the login throttle would refuse a
    # benchmark from one address: raised for this instance only
    cfg = new_instance("mssante-loginbench-", imaps=port)
    text = cfg.read_text()
    old = "max_sessions_per_ip = 50\nmax_sessions_per_account = 20\n"  # the [imap] pair
    assert old in text, "relay.toml template changed"
    cfg.write_text(text.replace(old, "max_sessions_per_ip = 10000\nmax_sessions_per_account = 10000\n", 1))
    asyncio.run(fill(cfg, 50))
    daemon = start_daemon(cfg, port)
    ctx = ssl.create_default_context(cafile=str(cfg.parent / "pki/ca.pem"))
    try:
        alone = asyncio.run(phase(port, ctx, a.sessions, a.seconds, 0))
        loaded = asyncio.run(phase(port, ctx, a.sessions, a.seconds, a.rate))
    finally:
        stop_daemon(daemon)
    print(json.dumps({"bench": "imap_login_load", "sessions": a.sessions, "login_rate": a.rate,
                      "hash_threads": load_config(cfg).auth.hash_threads, "alone": alone, "with_logins": loaded}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
