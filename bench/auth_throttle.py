#!/usr/bin/env python3
"""Login throttling under attack (issue 10 §1): what the owner sees while a stranger
sprays, and how many passwords an attacker really gets checked.

A fresh daemon with the production [auth] budgets and a production-cost argon2 hash for
the owner. First the owner logs in alone (baseline). Then an attacker opens S sessions
from 127.0.0.2 over implicit TLS and guesses for D seconds as fast as the answers come,
half the sessions on the owner's account and half on other INS (a spray); meanwhile the
owner logs in from 127.0.0.1 every second. Prints, as JSON: the owner's login latency
(p50, p95, max) alone and during the attack, how many of the owner's logins succeeded,
the attacker's attempts, the passwords actually checked for it (each AUTHENTICATIONFAILED
answer is one argon2 check; UNAVAILABLE answers checked nothing), and those checks per
minute. Loopback only, bounded by D.

  unshare -n bash -c 'ip link set lo up; python bench/auth_throttle.py -d 60 -s 50'
"""
from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402

from bench.instance import free_port, new_instance, start_daemon, stop_daemon  # noqa: E402
from bench.smtp_inbound import make_rcpts  # noqa: E402
from mailbox_store.crypto import MasterKey  # noqa: E402
from mailbox_store.store import Store  # noqa: E402
from policy.recipients import MailboxState  # noqa: E402
from relay.core.config import load_config  # noqa: E402

PASSWORD = "the owner's own password"
OWNER_IP, ATTACKER_IP = "127.0.0.1", "127.0.0.2"


async def create(cfg: Path, ins: str) -> None:
    config = load_config(cfg)
    store = await Store.open(config.store_url, MasterKey.load(config.master_key))
    try:
        await store.create_mailbox(ins, MailboxState.ACTIVE, PasswordHasher().hash(PASSWORD))
    finally:
        await store.close()


class Client:
    """The smallest IMAP client that can LOGIN, from a chosen source address."""

    def __init__(self) -> None:
        self.tag = 0

    async def open(self, port: int, ctx: ssl.SSLContext, source: str) -> "Client":
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost", local_addr=(source, 0))
        await self.reader.readline()  # greeting
        return self

    async def login(self, ins: str, password: str) -> str:
        self.tag += 1
        tag = f"a{self.tag}".encode()
        self.writer.write(tag + f' LOGIN {ins} "{password}"\r\n'.encode())
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("closed")
            if line.startswith(tag + b" "):
                text = line.decode("ascii", "replace")
                if " OK" in text[:len(tag) + 4]:
                    return "OK"
                return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else "NO"

    def close(self) -> None:
        self.writer.close()


async def owner_login(port: int, ctx: ssl.SSLContext, ins: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    c = await Client().open(port, ctx, OWNER_IP)
    answer = await c.login(ins, PASSWORD)
    elapsed = time.perf_counter() - t0
    c.close()
    return answer, elapsed


def figures(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    s = sorted(latencies)
    return {"p50_ms": round(statistics.median(s) * 1000, 1),
            "p95_ms": round(s[min(len(s) - 1, int(len(s) * 0.95))] * 1000, 1),
            "max_ms": round(s[-1] * 1000, 1)}


async def run(port: int, ctx: ssl.SSLContext, owner: str, others: list[str], sessions: int,
              duration: float) -> dict[str, object]:
    baseline = [await owner_login(port, ctx, owner) for _ in range(5)]
    answers: dict[str, dict[str, int]] = {"owner_account": {}, "other_accounts": {}}
    stop = time.monotonic() + duration

    async def attacker(n: int) -> None:
        c = await Client().open(port, ctx, ATTACKER_IP)
        target, kind = (owner, "owner_account") if n % 2 else (others[n], "other_accounts")
        i = 0
        try:
            while time.monotonic() < stop:
                a = await c.login(target, f"guess-{n}-{i}")
                answers[kind][a] = answers[kind].get(a, 0) + 1
                i += 1
        finally:
            c.close()

    async def owner_loop() -> list[tuple[str, float]]:
        out = []
        while time.monotonic() < stop:
            out.append(await owner_login(port, ctx, owner))
            await asyncio.sleep(1)
        return out

    t0 = time.monotonic()
    *_, during = await asyncio.gather(*(attacker(n) for n in range(sessions)), owner_loop())
    elapsed = time.monotonic() - t0
    checked = sum(a.get("AUTHENTICATIONFAILED", 0) for a in answers.values())
    return {
        "attack_seconds": round(elapsed, 1), "attacker_sessions": sessions,
        "owner_alone": {"ok": sum(a == "OK" for a, _ in baseline), "of": len(baseline),
                        **figures([t for _, t in baseline])},
        "owner_during_attack": {"ok": sum(a == "OK" for a, _ in during), "of": len(during),
                                **figures([t for _, t in during])},
        "attacker_answers": answers,
        "attacker_attempts": sum(sum(a.values()) for a in answers.values()),
        "attacker_passwords_checked": checked,
        "attacker_checks_per_minute": round(checked * 60 / elapsed, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--duration", type=float, default=60.0, help="seconds of attack (at most 600)")
    ap.add_argument("-s", "--sessions", type=int, default=50, help="attacker sessions (at most 50)")
    args = ap.parse_args()
    duration, sessions = min(args.duration, 600.0), max(2, min(args.sessions, 50))
    imaps = free_port()
    cfg = new_instance("bench-auth-", mx=free_port(), imap=free_port(), imaps=imaps)
    owner, *others = make_rcpts(sessions + 1, seed=10)
    asyncio.run(create(cfg, owner))
    daemon = start_daemon(cfg, imaps, stderr=subprocess.DEVNULL)
    try:
        ctx = ssl.create_default_context(cafile=str(cfg.parent / "pki/ca.pem"))
        result = asyncio.run(run(imaps, ctx, owner, others, sessions, duration))
    finally:
        stop_daemon(daemon)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
