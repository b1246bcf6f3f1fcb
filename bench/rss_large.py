#!/usr/bin/env python3
"""Peak memory of the MX under C concurrent large messages (issue 15 §2).

Starts a fresh instance (bench/instance.py), sends C concurrent messages of S bytes
(default 16 x 25 MB, the largest the MX accepts) with the anchor's load generator, and
prints the daemon's peak RSS (VmHWM) and what it held before the load, as one JSON line.
Every accepted message is checked to be stored. Loopback only; bounded by -n and -t.

  python bench/rss_large.py                      # 16 x 25 MB, plain text
  python bench/rss_large.py --attach             # 16 x 25 MB, one PDF-like attachment
  python bench/rss_large.py --set 'max_bytes_in_flight = 268435456=max_bytes_in_flight = 2147483648'
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.instance import free_port, new_instance, start_daemon, stop_daemon
from bench.smtp_inbound import (
    DEFAULT_LOADGEN,
    _count,
    _create,
    _store_op,
    make_rcpts,
    rss_kib,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("-n", "--messages", type=int, default=16)
    p.add_argument("-s", "--size", type=int, default=25_000_000)
    p.add_argument("-t", "--max-seconds", type=float, default=600)
    p.add_argument("--attach", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="OLD=NEW",
                   help="replace text in relay.toml (e.g. a [workers] key)")
    p.add_argument("--python", default=sys.executable)
    a = p.parse_args()
    port = free_port()
    extra = {}
    for s in a.set:  # "key = 1=key = 2": the first " = " belongs to OLD
        k, eq, rest = s.partition(" = ")
        v_old, _, new = rest.partition("=")
        extra[f"{k}{eq}{v_old}"] = new
    cfg = new_instance("mssante-rss-", mx=port, extra=extra)
    inst, work = cfg.parent, cfg.parent.parent
    rcpts = make_rcpts(16)
    rcpt_file = work / "rcpts.txt"
    rcpt_file.write_text("\n".join(rcpts) + "\n")
    asyncio.run(_store_op(cfg, lambda s: _create(s, rcpts)))
    daemon = start_daemon(cfg, port, stderr=subprocess.PIPE)
    before = rss_kib(daemon.pid)
    pki = inst / "pki"
    cmd = [a.python, str(DEFAULT_LOADGEN), "--port", str(port), "-c", str(a.concurrency), "-n", str(a.messages),
           "-s", str(a.size), "-t", str(a.max_seconds), "--timeout", "300",
           "--pki", str(pki), "--ca", str(pki / "ca.pem"), "--cert", str(pki / "operator.pem"),
           "--key", str(pki / "operator.key"), "--sender", "bench@test-operator.mssante.fr",
           "--helo", "mail.test-operator.mssante.fr", "--rcpt-file", str(rcpt_file)]
    if a.attach:
        cmd.append("--attach")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.max_seconds + 400)
        res = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {"error": out.stderr[-500:]}
        peak = rss_kib(daemon.pid)
    finally:
        stop_daemon(daemon)
    stored, _ = asyncio.run(_store_op(cfg, lambda s: _count(s, rcpts)))
    print(json.dumps({"bench": "rss_large", "c": a.concurrency, "n": a.messages, "size": a.size,
                      "attach": a.attach, "set": a.set, "accepted": res.get("accepted"),
                      "failed": res.get("failed"), "errors": res.get("errors"), "stored": stored,
                      "seconds": res.get("seconds"), "loadgen_error": res.get("error"),
                      "rss_before_mib": round((before or 0) / 1024, 1),
                      "peak_rss_mib": round((peak or 0) / 1024, 1)}), flush=True)
    return 0 if res.get("accepted") == stored else 1


if __name__ == "__main__":
    sys.exit(main())
