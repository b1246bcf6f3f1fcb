#!/usr/bin/env python3
"""Hostile IMAP clients against a real daemon (issue 10 §2): what one session's command
costs the others, and what an APPEND flood costs the daemon's memory.

(a) search: one INBOX of N messages (10,000), filled through the store (the MX's
    encrypted path). One hostile session sends, R times each, SEARCH / UID SEARCH /
    FETCH / UID FETCH / STORE with a 10,000-element sequence set; meanwhile probe
    sessions send NOOP and FETCH n (FLAGS ENVELOPE) every 25 ms (under the command
    pacing) and an MX client delivers a message every 0.5 s. Prints each hostile
    command's latency, and the probes' p50/p99 alone (baseline) and during the attack.
(b) append: S sessions (50) over A accounts (3) each APPEND one M-byte (20 MB)
    message at the same time (synchronizing literals, raw TLS sockets). Prints how many
    were accepted or refused (NO [LIMIT]), the daemon's peak RSS (VmRSS sampled every
    20 ms, and VmHWM) and the time taken. Bounded: every socket times out, the whole
    flood stops after --deadline seconds.

  python bench/imap_hostile.py                 # both parts, issue 10's figures
  python bench/imap_hostile.py --part append --in-flight 2000000000 --per-account 1000000000

Run it inside `unshare -n` (COMMON.md): it starts its own daemon on free ports.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import smtplib
import socket
import ssl
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from argon2 import PasswordHasher  # noqa: E402

from mailbox_store.crypto import MasterKey  # noqa: E402
from mailbox_store.store import Store  # noqa: E402
from policy.recipients import MailboxState  # noqa: E402
from relay.core.config import load_config  # noqa: E402
from bench.imap_fetch import message  # noqa: E402
from bench.instance import free_port, new_instance, start_daemon, stop_daemon  # noqa: E402

INS = "279035121518989"
ACCOUNTS = ["279035121518989", "180017512300130", "279035121519088"]
PASSWORD = "bench password"
SENDER = "dr.martin@test-operator.mssante.fr"


# ---- a minimal raw IMAP client (no copies of a 20 MB literal, exact control of "+") ----

class Client:
    def __init__(self, port: int, ctx: ssl.SSLContext, timeout: float = 120) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.f = self.sock.makefile("rb")
        self.n = 0
        if not self.f.readline().startswith(b"* OK"):
            raise RuntimeError("no greeting")

    def command(self, text: bytes) -> tuple[bytes, list[bytes]]:
        """Send one command; (tagged line, untagged lines), literals skipped."""
        self.n += 1
        tag = b"t%d" % self.n
        self.sock.sendall(tag + b" " + text + b"\r\n")
        return self._until(tag)

    def _until(self, tag: bytes) -> tuple[bytes, list[bytes]]:
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("closed")
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                self.f.read(int(m.group(1)))
            if line.startswith(tag + b" "):
                return line, lines
            lines.append(line)

    def login(self, ins: str) -> None:
        tagged, _ = self.command(f'LOGIN {ins} "{PASSWORD}"'.encode())
        if b" OK" not in tagged:
            raise RuntimeError(tagged.decode())

    def append(self, body: bytes, piece: int = 1 << 20) -> bytes:
        """APPEND with a synchronizing literal: the body only after "+"."""
        self.n += 1
        tag = b"t%d" % self.n
        self.sock.sendall(tag + b" APPEND INBOX {%d}\r\n" % len(body))
        line = self.f.readline()
        if not line.startswith(b"+"):
            return line  # refused before the continuation
        view = memoryview(body)
        for i in range(0, len(body), piece):
            self.sock.sendall(view[i:i + piece])
        self.sock.sendall(b"\r\n")
        return self._until(tag)[0]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def summary(values: list[float]) -> dict[str, object]:
    return {"n": len(values), "p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99),
            "max_ms": round(max(values) * 1000, 1) if values else None}


# ---- (a) SEARCH with a 10,000-element set, and the other sessions meanwhile ----------------

async def fill(cfg: Path, n: int, accounts: list[str]) -> None:
    config = load_config(cfg)
    store = await Store.open(config.store_url, MasterKey.load(config.master_key))
    try:
        hashed = PasswordHasher().hash(PASSWORD)
        boxes = [await store.create_mailbox(ins, MailboxState.ACTIVE, hashed) for ins in accounts]
        for start in range(0, n, 200):
            await asyncio.gather(*(store.deliver([boxes[0]], message(i)) for i in range(start, min(start + 200, n))))
    finally:
        await store.close()


class Probe(threading.Thread):
    """One session sending a cheap command every `every` seconds, timing each."""

    def __init__(self, name: str, send: Callable[[], None], every: float) -> None:
        super().__init__(daemon=True, name=name)
        self.send = send
        self.every = every
        self.samples: list[tuple[float, float]] = []  # (start, seconds)
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                self.send()
            except Exception as e:  # reported, the bench goes on
                self.error = f"{type(e).__name__}: {e}"
                return
            self.samples.append((t, time.monotonic() - t))
            self.stop.wait(max(0.0, self.every - (time.monotonic() - t)))

    def between(self, start: float, end: float) -> list[float]:
        return [d for t, d in self.samples if start <= t < end or (t < start and t + d > start)]


def part_search(port: int, mx_port: int, inst: Path, n: int, runs: int) -> dict[str, object]:
    ctx = ssl.create_default_context(cafile=str(inst / "pki/ca.pem"))
    hostile = Client(port, ctx, timeout=300)
    hostile.login(INS)
    hostile.command(b"SELECT INBOX")
    noop = Client(port, ctx)
    noop.login(INS)
    fetcher = Client(port, ctx)
    fetcher.login(INS)
    fetcher.command(b"EXAMINE INBOX")
    rng = random.Random(7)
    mx_ctx = ssl.create_default_context(cafile=str(inst / "pki/ca.pem"))
    mx_ctx.load_cert_chain(inst / "pki/operator.pem", inst / "pki/operator.key")
    smtp = smtplib.SMTP("127.0.0.1", mx_port, local_hostname="mail.test-operator.mssante.fr", timeout=120)
    smtp.starttls(context=mx_ctx)
    smtp.ehlo()
    counter = iter(range(10**9))

    def mx_send() -> None:
        i = next(counter)
        raw = (f"From: <{SENDER}>\r\nTo: <{INS}@patient.mssante.fr>\r\nSubject: Probe {i}\r\n"
               f"Message-ID: <probe-{i}@test-operator.mssante.fr>\r\n\r\nBonjour.\r\n").encode()
        assert smtp.sendmail(SENDER, [f"{INS}@patient.mssante.fr"], raw) == {}

    probes = [Probe("noop", lambda: noop.command(b"NOOP"), 0.025),
              Probe("fetch", lambda: fetcher.command(b"FETCH %d (FLAGS ENVELOPE)" % rng.randint(1, n)), 0.025),
              Probe("mx", mx_send, 0.5)]
    for p in probes:
        p.start()
    time.sleep(3)
    baseline_end = time.monotonic()
    odd = ",".join(str(i) for i in range(1, 2 * n, 2)).encode()  # 10,000 elements, beyond EXISTS too
    descending = ",".join(str(i) for i in range(n, 0, -1)).encode()  # 10,000 elements within EXISTS
    commands = [("SEARCH odd", b"SEARCH " + odd), ("UID SEARCH UID odd", b"UID SEARCH UID " + odd),
                ("FETCH descending (FLAGS)", b"FETCH " + descending + b" (FLAGS)"),
                ("UID FETCH odd (FLAGS)", b"UID FETCH " + odd + b" (FLAGS)"),
                ("STORE descending +FLAGS.SILENT", b"STORE " + descending + b" +FLAGS.SILENT (\\Flagged)"),
                ("SEARCH odd UNSEEN TEXT", b"SEARCH " + odd + b" UNSEEN TEXT \"compte rendu 77\"")]
    hostile_results: dict[str, object] = {}
    attack_start = time.monotonic()
    windows: dict[str, list[tuple[float, float]]] = {}
    for label, text in commands:
        times, replies = [], set()
        for _ in range(runs):
            t = time.monotonic()
            tagged, untagged = hostile.command(text)
            times.append(time.monotonic() - t)
            windows.setdefault(label, []).append((t, time.monotonic()))
            replies.add(tagged.split(b" ", 2)[1].decode())
            time.sleep(0.2)  # a few probes between two runs, outside the windows
        hostile_results[label] = {"median_ms": round(statistics.median(times) * 1000, 1),
                                  "max_ms": round(max(times) * 1000, 1), "replies": sorted(replies)}
    attack_end = time.monotonic()
    time.sleep(0.5)
    for p in probes:
        p.stop.set()
    for p in probes:
        p.join(30)
    for label, spans in windows.items():
        during = {p.name: [d for a, b in spans for d in p.between(a, b)] for p in probes if p.name != "mx"}
        hostile_results[label]["others_meanwhile"] = {  # type: ignore[index]
            name: {"n": len(v), "p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99)} for name, v in during.items()}
    for c in (hostile, noop, fetcher):
        c.close()
    smtp.quit()
    return {
        "messages": n, "set_elements": 10_000, "runs": runs, "hostile": hostile_results,
        "attack_s": round(attack_end - attack_start, 2),
        "others_baseline": {p.name: summary(p.between(0, baseline_end)) for p in probes},
        "others_during_attack": {p.name: summary(p.between(attack_start, attack_end)) for p in probes},
        "probe_errors": {p.name: p.error for p in probes if p.error},
    }


# ---- (b) APPEND flood and the daemon's memory --------------------------------------------------

def rss_mib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return 0


def part_append(port: int, inst: Path, pid: int, sessions: int, size: int, deadline: float) -> dict[str, object]:
    ctx = ssl.create_default_context(cafile=str(inst / "pki/ca.pem"))
    head = (f"From: <{INS}@patient.mssante.fr>\r\nTo: <{SENDER}>\r\nSubject: Brouillon\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n").encode()
    line = b"Ligne de texte d'un tres long brouillon, pour occuper de la place.\r\n"
    body = head + line * ((size - len(head)) // len(line))
    clients = []
    for i in range(sessions):
        c = Client(port, ctx, timeout=deadline)
        c.login(ACCOUNTS[i % len(ACCOUNTS)])
        clients.append(c)
    rss_before = rss_mib(pid)
    results: list[str] = []
    lock = threading.Lock()
    go = threading.Barrier(sessions + 1)

    def one(c: Client) -> None:
        go.wait()
        try:
            reply = c.append(body)
            outcome = reply.split(b" ", 3)[1].decode() + (" [LIMIT]" if b"[LIMIT]" in reply else "")
        except (OSError, ConnectionError) as e:
            outcome = f"error {type(e).__name__}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    peak = rss_before
    started = time.monotonic()
    go.wait()
    while any(t.is_alive() for t in threads) and time.monotonic() - started < deadline:
        peak = max(peak, rss_mib(pid))
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    for c in clients:
        c.close()
    counts: dict[str, int] = {}
    for r in results:
        counts[r] = counts.get(r, 0) + 1
    return {"sessions": sessions, "accounts": len(ACCOUNTS), "message_bytes": len(body),
            "outcomes": counts, "unfinished": sessions - len(results), "elapsed_s": round(elapsed, 1),
            "rss_before_mib": rss_before, "rss_peak_sampled_mib": peak, "vm_hwm_mib": rss_mib(pid, "VmHWM")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("search", "append", "both"), default="both")
    ap.add_argument("-n", "--messages", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--size", type=int, default=20_000_000)
    ap.add_argument("--deadline", type=float, default=600, help="seconds the APPEND flood may take")
    ap.add_argument("--per-account", type=int, help="imap.max_append_bytes_per_account for this run")
    ap.add_argument("--in-flight", type=int, help="imap.max_append_bytes_in_flight for this run")
    a = ap.parse_args()
    out: dict[str, object] = {"bench": "imap_hostile"}
    imaps, mx = free_port(), free_port()
    extra = {}
    if a.per_account:
        extra["max_append_bytes_per_account = 104857600"] = f"max_append_bytes_per_account = {a.per_account}"
    if a.in_flight:
        extra["max_append_bytes_in_flight = 536870912"] = f"max_append_bytes_in_flight = {a.in_flight}"
    cfg = new_instance("mssante-hostile-", mx=mx, imaps=imaps, extra=extra)
    inst = cfg.parent
    t0 = time.perf_counter()
    asyncio.run(fill(cfg, a.messages if a.part != "append" else 0, ACCOUNTS))
    out["fill_s"] = round(time.perf_counter() - t0, 1)
    daemon = start_daemon(cfg, imaps)
    try:
        if a.part in ("search", "both"):
            out["search"] = part_search(imaps, mx, inst, a.messages, a.runs)
        if a.part in ("append", "both"):
            out["append"] = part_append(imaps, inst, daemon.pid, a.sessions, a.size, a.deadline)
    finally:
        stop_daemon(daemon)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
