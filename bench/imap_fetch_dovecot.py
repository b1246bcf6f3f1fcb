#!/usr/bin/env python3
"""The anchor of bench/imap_fetch.py: the same FETCH 1:* (FLAGS ENVELOPE) of the same
N messages, against the private Dovecot that ../shared/anchor/imap_compare.sh sets up
(run that once, its setup is reused: IMAPCMP_TMP, default /tmp/mssante-imapcmp). The
messages are written straight into testuser1's Maildir; Dovecot listens on 127.0.0.1:1993
(implicit TLS). Run it beside imap_fetch.py in the same sitting, in a private network
namespace, and compare the ratio. Prints JSON.

  python bench/imap_fetch_dovecot.py -n 10000
"""
from __future__ import annotations

import argparse
import imaplib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.imap_fetch import message  # noqa: E402


def wait_port(port: int, seconds: float = 40) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"dovecot did not listen on {port}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--messages", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    w = Path(os.environ.get("IMAPCMP_TMP", "/tmp/mssante-imapcmp"))
    conf = w / "dovecot/dovecot.conf"
    if not conf.exists():
        raise SystemExit(f"no {conf}: run imap_compare.sh once first")
    mail = w / "dovecot/mail"
    for child in mail.iterdir():
        shutil.rmtree(child)
    box = mail / "patient.mssante.fr/testuser1/Maildir"
    for d in ("new", "cur", "tmp"):
        (box / d).mkdir(parents=True)
    t0 = time.perf_counter()
    for i in range(a.messages):
        (box / "cur" / f"{1700000000 + i}.M{i}P1.bench:2,").write_bytes(message(i))
    subprocess.run(["chown", "-R", "mail:mail", str(mail)], check=True)
    fill_s = time.perf_counter() - t0
    env = {**os.environ, "LD_LIBRARY_PATH": "/usr/lib/dovecot"}
    daemon = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_port(1993)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        runs = []
        for _ in range(a.runs):
            c = imaplib.IMAP4_SSL("127.0.0.1", 1993, ssl_context=ctx, timeout=120)
            c.login("testuser1@patient.mssante.fr", "pass")
            t1 = time.perf_counter()
            c.select("INBOX", readonly=True)
            t2 = time.perf_counter()
            typ, data = c.fetch("1:*", "(FLAGS ENVELOPE)")
            t3 = time.perf_counter()
            got = sum(1 for d in data if d and (d if isinstance(d, bytes) else d[0]).find(b"ENVELOPE") >= 0)
            c.logout()
            runs.append({"select_s": round(t2 - t1, 3), "fetch_s": round(t3 - t2, 3), "messages": got})
    finally:
        daemon.terminate()
        daemon.wait(30)
    fetch = sorted(r["fetch_s"] for r in runs)
    out = {"bench": "imap_fetch_dovecot", "messages": a.messages, "fill_s": round(fill_s, 1), "runs": runs,
           "fetch_median_s": fetch[len(fetch) // 2],
           "all_returned": all(r["messages"] == a.messages for r in runs)}
    print(json.dumps(out))
    return 0 if out["all_returned"] else 1


if __name__ == "__main__":
    sys.exit(main())
