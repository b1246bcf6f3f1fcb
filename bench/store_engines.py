#!/usr/bin/env python3
"""Inbound throughput on each store engine, in one run: bench/smtp_inbound.py (the
anchor's smtp_load.py, C connections, S-byte messages, 250 = durably stored) against
an instance on SQLite, then on PostgreSQL (one node).

PostgreSQL is Debian's, started here as tests/pg.py does (initdb + pg_ctl on a Unix
socket in a temporary folder), but durable: fsync, synchronous_commit and full page
writes on, as SQLite's synchronous=FULL. Both runs share this machine's cores with the
load generator (and PostgreSQL's own processes): the ratio says what the engine costs
here, not what a machine per node would do. Prints each run's summary, the ratio and the
load average before and after.

  python bench/store_engines.py -c 16 -n 3000 -s 10240
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pg import PgServer, pg_bindir  # noqa: E402


def inbound(args: argparse.Namespace, store_url: str | None) -> dict[str, object]:
    cmd = [sys.executable, str(ROOT / "bench/smtp_inbound.py"), "-c", str(args.concurrency),
           "-n", str(args.messages), "-s", str(args.size), "-t", str(args.max_seconds)]
    if store_url:
        cmd += ["--store-url", store_url]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=args.max_seconds * 2 + 300)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        sys.exit(f"smtp_inbound failed ({store_url or 'sqlite'}): {out.stderr[-2000:]}")
    return json.loads(lines[-1])


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("-n", "--messages", type=int, default=3000)
    p.add_argument("-s", "--size", type=int, default=10240)
    p.add_argument("-t", "--max-seconds", type=float, default=300)
    a = p.parse_args()
    bindir = pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed (Debian package postgresql)")
    print(f"load average before: {loadavg()} ({os.cpu_count()} cores)", flush=True)
    results = {"sqlite": inbound(a, None)}
    print(json.dumps(results["sqlite"]), flush=True)
    server = PgServer(bindir)
    server.start(durable=True)
    try:
        server.make_template()
        results["postgresql"] = inbound(a, server.new_database())
    finally:
        server.stop()
    print(json.dumps(results["postgresql"]), flush=True)
    print(f"load average after: {loadavg()}", flush=True)
    sq, pg = results["sqlite"], results["postgresql"]
    ratio = round(float(pg["msgs_per_s"]) / float(sq["msgs_per_s"]), 2)  # type: ignore[arg-type]
    print(json.dumps({"bench": "store_engines", "c": a.concurrency, "n": a.messages, "size": a.size,
                      "sqlite_msgs_per_s": sq["msgs_per_s"], "postgresql_msgs_per_s": pg["msgs_per_s"],
                      "postgresql_over_sqlite": ratio, "sqlite_p99_ms": sq["p99_ms"], "postgresql_p99_ms": pg["p99_ms"],
                      "all_stored": bool(sq["all_stored"] and pg["all_stored"])}), flush=True)
    return 0 if sq["all_stored"] and pg["all_stored"] else 1


if __name__ == "__main__":
    sys.exit(main())
