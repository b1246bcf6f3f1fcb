#!/usr/bin/env python3
"""Inbound throughput on SQLite, on PostgreSQL with one node, and on PostgreSQL with two
nodes, in one run (issue 14 "Tests and benchmark"), with the anchor's load generator
(../shared/anchor/smtp_load.py): C connections in all (split between the two nodes),
N messages of S bytes, a warm-up pass then the measured one. Then the bytes a message
costs on PostgreSQL (row, blob, indexes), for docs/scaling.md.

PostgreSQL is a throwaway server (tests/pg.py's PgServer, durable) with fsync on: every 250
means committed and flushed, as on SQLite (synchronous=FULL). Loopback only; each pass
bounded by -n and the generator's time limit. The machine's load is printed: the
database, the nodes and the generator share its cores, so the two-node figure shows
that a second node loses and duplicates nothing, not how two machines would scale.

  python bench/nodes_inbound.py -c 16 -n 3000 -s 10240
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.instance import free_port, new_instance, start_daemon, stop_daemon  # noqa: E402
from bench.smtp_inbound import DEFAULT_LOADGEN, _count, _create, _store_op, make_rcpts  # noqa: E402
from sqlalchemy import make_url  # noqa: E402

from tests.pg import PgServer, pg_bindir  # noqa: E402

PORTS_TO_FREE = ('listen = "127.0.0.1:2587"', 'listen_tls = "127.0.0.1:2465"', 'listen = "127.0.0.1:8443"')


def _configs(prefix: str, nodes: int, store_url: str | None) -> list[tuple[Path, int]]:
    """One instance; node k > 0 gets a copy of its relay.toml with its own MX port (same
    keys, same PKI, same database)."""
    port = free_port()
    extra = {p: p.rsplit(":", 1)[0] + ':0"' for p in PORTS_TO_FREE}
    if store_url:
        extra['url = "sqlite+aiosqlite:///relay.db"'] = f'url = "{store_url}"'
    cfg = new_instance(prefix, mx=port, extra=extra)
    out = [(cfg, port)]
    for k in range(1, nodes):
        p = free_port()
        other = cfg.with_name(f"relay-node{k}.toml")
        other.write_text(cfg.read_text().replace(f'listen = "127.0.0.1:{port}"', f'listen = "127.0.0.1:{p}"'))
        out.append((other, p))
    return out


def _loadgen(a: argparse.Namespace, cfg: Path, port: int, c: int, n: int, label: str,
             rcpt_file: Path) -> subprocess.Popen[str]:
    pki = cfg.parent / "pki"
    return subprocess.Popen(
        [a.python, str(a.loadgen), "--port", str(port), "-c", str(c), "-s", str(a.size), "-t", str(a.max_seconds),
         "--pki", str(pki), "--ca", str(pki / "ca.pem"), "--cert", str(pki / "operator.pem"),
         "--key", str(pki / "operator.key"), "--sender", "bench@test-operator.mssante.fr",
         "--helo", "mail.test-operator.mssante.fr", "--rcpt-file", str(rcpt_file), "-n", str(n), "--label", label],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_setup(a: argparse.Namespace, name: str, nodes: int, store_url: str | None, rcpts: list[str]) -> dict:
    configs = _configs(f"mssante-nodes-{name}-", nodes, store_url)
    cfg0 = configs[0][0]
    rcpt_file = cfg0.parent.parent / "rcpts.txt"
    rcpt_file.write_text("\n".join(rcpts) + "\n")
    asyncio.run(_store_op(cfg0, lambda s: _create(s, rcpts)))
    daemons = [start_daemon(cfg, port, stderr=subprocess.PIPE) for cfg, port in configs]
    passes: dict[str, dict] = {}
    accepted_total = 0
    try:
        for label, n in (("warmup", max(a.messages // 6, 50)), ("measured", a.messages)):
            started = time.monotonic()
            gens = [_loadgen(a, cfg, port, a.concurrency // nodes, n // nodes, label, rcpt_file)
                    for cfg, port in configs]
            results = []
            for g in gens:
                out, err = g.communicate(timeout=a.max_seconds + 120)
                if g.returncode != 0:
                    sys.exit(f"load generator failed: {err[-2000:]}")
                results.append(json.loads(out.strip().splitlines()[-1]))
            wall = time.monotonic() - started
            accepted = sum(r["accepted"] for r in results)
            accepted_total += accepted
            seconds = max(r["seconds"] for r in results)
            passes[label] = {"accepted": accepted, "failed": sum(r["failed"] for r in results),
                             "seconds": round(seconds, 2), "wall": round(wall, 2),
                             "msgs_per_s": round(accepted / seconds, 1) if seconds else 0.0,
                             "p50_ms": max(r["p50_ms"] for r in results),
                             "p99_ms": max(r["p99_ms"] for r in results)}
    finally:
        errors = [stop_daemon(d) for d in daemons]
    for d, err in zip(daemons, errors):
        if d.returncode != 0:
            print(f"{name}: a daemon exited with {d.returncode}: {err[-1500:]}", file=sys.stderr)
    stored, _ = asyncio.run(_store_op(cfg0, lambda s: _count(s, rcpts)))
    m = passes["measured"]
    return {"setup": name, "nodes": nodes, "c": a.concurrency, "n": a.messages, "size": a.size, **m,
            "stored_total": stored, "accepted_total": accepted_total, "all_stored_once": stored == accepted_total,
            "load_after": os.getloadavg()[0]}


async def pg_sizes(dsn: str) -> dict:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        n = await conn.fetchval("SELECT count(*) FROM messages")
        row = await conn.fetchrow(
            "SELECT pg_total_relation_size('messages') AS messages_total,"
            " pg_relation_size('messages') AS messages_heap,"
            " pg_indexes_size('messages') AS messages_indexes,"
            " pg_total_relation_size('blobs') AS blobs_total,"
            " (SELECT avg(pg_column_size(sealed)) FROM blobs) AS blob_stored,"
            " (SELECT avg(octet_length(sealed)) FROM blobs) AS blob_raw,"
            " (SELECT avg(pg_column_size(m.*)) FROM messages m) AS message_row")
    finally:
        await conn.close()
    return {"messages": n, "bytes_per_message_row_total": round(row["messages_total"] / n),
            "bytes_per_message_heap": round(row["messages_heap"] / n),
            "bytes_per_message_indexes": round(row["messages_indexes"] / n),
            "message_row_avg": round(float(row["message_row"])),
            "bytes_per_blob_total": round(row["blobs_total"] / n),
            "blob_avg_stored": round(float(row["blob_stored"])), "blob_avg_sealed": round(float(row["blob_raw"]))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("-n", "--messages", type=int, default=3000)
    p.add_argument("-s", "--size", type=int, default=10240)
    p.add_argument("-t", "--max-seconds", type=float, default=300)
    p.add_argument("--recipients", type=int, default=100)
    p.add_argument("--loadgen", type=Path, default=DEFAULT_LOADGEN)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--only", choices=("sqlite", "pg1", "pg2"), action="append")
    a = p.parse_args()
    if not a.loadgen.exists():
        sys.exit(f"load generator not found: {a.loadgen}")
    bindir = pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
    rcpts = make_rcpts(a.recipients)
    server = PgServer(bindir)
    server.start(durable=True)
    server.make_template()
    print(json.dumps({"uptime_load_before": os.getloadavg(), "cpus": os.cpu_count()}), flush=True)
    rows = []
    try:
        for name, nodes in (("sqlite", 1), ("pg1", 1), ("pg2", 2)):
            if a.only and name not in a.only:
                continue
            url = None
            if name != "sqlite":
                url = server.new_database()  # a copy of the migrated template
            row = run_setup(a, name, nodes, url, rcpts)
            if name != "sqlite":
                row["pg_bytes"] = asyncio.run(pg_sizes(server.dsn(str(make_url(url).database))))
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.stop()
    base = next((r for r in rows if r["setup"] == "sqlite"), None)
    for r in rows:
        ratio = f", {r['msgs_per_s'] / base['msgs_per_s']:.2f}x SQLite" if base and base["msgs_per_s"] else ""
        print(f"{r['setup']}: {r['nodes']} node(s), C={r['c']}, {r['size']} B: {r['msgs_per_s']} msg/s, "
              f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms{ratio}; {r['stored_total']}/{r['accepted_total']} "
              f"stored once; load {r['load_after']:.1f}", file=sys.stderr)
    return 0 if all(r["all_stored_once"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
