#!/usr/bin/env python3
"""IMAP SORT / THREAD / CONDSTORE benchmark on a 10,000-message INBOX.

Fills one mailbox of a fresh instance through the store (bench/imap_fetch.py's fill),
starts the daemon, then times from imaplib over TLS: the first SORT (SUBJECT) (every
message decrypted once for its header keys), a second SORT (REVERSE DATE) and THREAD
REFERENCES (keys from the cache), FETCH 1:* (FLAGS) (CHANGEDSINCE n) after one STORE,
and a QRESYNC SELECT after one change. Prints JSON.

  python bench/imap_sort.py -n 10000
"""
from __future__ import annotations

import argparse
import asyncio
import imaplib
import json
import re
import ssl
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.imap_fetch import INS, PASSWORD, fill  # noqa: E402
from bench.instance import free_port, new_instance, start_daemon, stop_daemon  # noqa: E402


def timed(c: imaplib.IMAP4, *args: str) -> tuple[float, list[bytes]]:
    t = time.perf_counter()
    typ, data = c._simple_command(*args)  # type: ignore[attr-defined]
    assert typ == "OK", (args, typ, data)
    name = args[0] if args[0] != "UID" else args[1]
    return time.perf_counter() - t, c._untagged_response(typ, data, name)[1]  # type: ignore[attr-defined]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--messages", type=int, default=10_000)
    a = ap.parse_args()
    port = free_port()
    cfg = new_instance("mssante-imapsort-", imaps=port)
    asyncio.run(fill(cfg, a.messages))
    daemon = start_daemon(cfg, port)
    out: dict[str, object] = {"bench": "imap_sort", "messages": a.messages}
    try:
        ctx = ssl.create_default_context(cafile=str(cfg.parent / "pki/ca.pem"))
        c = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=600)
        c.login(INS, PASSWORD)
        c._simple_command("ENABLE", "QRESYNC")  # type: ignore[attr-defined]
        t = time.perf_counter()
        typ, data = c.select("INBOX")
        out["select_s"] = round(time.perf_counter() - t, 3)
        high = int(re.search(rb"HIGHESTMODSEQ (\d+)", b" ".join(
            x for x in c.untagged_responses.get("OK", []) if isinstance(x, bytes))).group(1))  # type: ignore[union-attr]
        uidvalidity = int(c.untagged_responses["UIDVALIDITY"][0])
        s, data = timed(c, "SORT", "(SUBJECT)", "UTF-8", "ALL")
        out["sort_subject_cold_s"] = round(s, 3)
        out["sorted_count"] = len(data[0].split()) if data and data[0] else 0
        s, _ = timed(c, "SORT", "(REVERSE DATE)", "UTF-8", "ALL")
        out["sort_date_warm_s"] = round(s, 3)
        s, _ = timed(c, "THREAD", "REFERENCES", "UTF-8", "ALL")
        out["thread_references_warm_s"] = round(s, 3)
        c.store("5", "+FLAGS", "(\\Flagged)")
        s, data = timed(c, "FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {high})")
        out["fetch_changedsince_s"] = round(s, 3)
        out["changed_returned"] = len(data)
        c.close()
        t = time.perf_counter()
        c._simple_command("SELECT", "INBOX", f"(QRESYNC ({uidvalidity} {high}))")  # type: ignore[attr-defined]
        out["qresync_select_s"] = round(time.perf_counter() - t, 3)
        c.logout()
        for line in Path(f"/proc/{daemon.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["daemon_peak_rss_mib"] = int(line.split()[1]) // 1024
    finally:
        stop_daemon(daemon)
    print(json.dumps(out))
    return 0 if out.get("sorted_count") == a.messages and out.get("changed_returned") == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
