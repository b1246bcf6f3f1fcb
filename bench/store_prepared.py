#!/usr/bin/env python3
"""Per-statement and per-hop cost of the store's hot SQL path (issue 12 §3): a few of
IMAP's statements through SQLAlchemy's `conn.execute` against mailbox_store/prepared.py,
and a Reader hop the old way (connect, BEGIN through the engine's event, close) against
the Reader's kept connection. Same SQLite file, same rows, alternating rounds; prints
microseconds per call and the ratios. CPU time of this process only: run it beside
nothing else for figures, and compare ratios, not absolute values.

  python bench/store_prepared.py [--messages 200] [--rounds 5] [--calls 2000]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from mailbox_store import folders, imapreads, messages, recent
from mailbox_store.crypto import MasterKey
from mailbox_store.reader import Reader
from mailbox_store.store import Store, _install_sqlite_pragmas, sqlite_url
from policy.recipients import MailboxState

INS = "279035121518989"


async def _fill(path: Path, n: int) -> tuple[int, int]:
    store = await Store.open(sqlite_url(path / "s.db"), MasterKey.generate(path / "k"))
    mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
    for i in range(n):
        await store.deliver([mb], f"Subject: m{i}\r\nFrom: a@b.fr\r\n\r\nbody {i}\r\n".encode())
    fid = (await store.folder(mb.id, "INBOX")).id  # type: ignore[union-attr]
    await store.close()
    return mb.id, fid


def _per_call(fn: Any, calls: int) -> float:
    t = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - t) / calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=2000)
    a = p.parse_args()
    path = Path(tempfile.mkdtemp(prefix="store-prepared-"))
    mid, fid = asyncio.run(_fill(path, a.messages))
    engine = create_engine(f"sqlite:///{path / 's.db'}", pool_size=2, max_overflow=0)
    _install_sqlite_pragmas(engine, 10_000)  # BEGIN through the event, as the old Reader's engine
    uids = list(range(1, min(a.messages, 50) + 1))
    cases = [
        ("folder id", folders._FOLDER_ID, {"mid": mid, "name": "INBOX"}),
        ("folder counts", imapreads._P_FOLDER, {"mid": mid, "name": "INBOX"}),
        ("mailbox by INS", imapreads._P_MAILBOX_BY_INS, {"ins": INS}),
        ("\\Recent mark", recent._MARK, {"fid": fid}),
        ("flags of 50 UIDs", messages._FLAG_ROWS, {"fid": fid, "uids": uids}),
        (f"snapshot, {a.messages} rows", imapreads._P_SNAP_MESSAGES, {"fid": fid, "since": 0}),
    ]
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _, _ in cases}
    hops: tuple[list[float], list[float]] = ([], [])
    read_engine = create_engine(f"sqlite:///{path / 's.db'}", pool_size=1, max_overflow=0)
    _install_sqlite_pragmas(read_engine, 10_000, begin=False)
    reader = Reader(read_engine, threads=1)

    def old_hop() -> None:  # the Reader before: a pooled connection per hop, BEGIN by the event
        with engine.connect() as conn:
            conn.execute(folders._FOLDER_ID.stmt, {"mid": mid, "name": "INBOX"}).scalar()

    def new_hop() -> None:
        reader._call(lambda conn: folders._FOLDER_ID.scalar(conn, {"mid": mid, "name": "INBOX"}))

    with engine.connect() as conn:
        conn.begin()
        for _ in range(a.rounds):
            for name, prepared, params in cases:
                old = _per_call(lambda p=prepared, q=params: conn.execute(p.stmt, q).all(), a.calls)
                new = _per_call(lambda p=prepared, q=params: p.all(conn, q), a.calls)
                results[name][0].append(old)
                results[name][1].append(new)
            hops[0].append(_per_call(old_hop, a.calls))
            hops[1].append(_per_call(new_hop, a.calls))
    reader.close()
    print(f"SQLite, {a.messages} messages, median of {a.rounds} rounds x {a.calls} calls, CPU us per call")
    print(f"{'':28} {'conn.execute':>13} {'prepared':>9} {'ratio':>6}")
    for name, (old, new) in results.items():
        mo, mn = statistics.median(old), statistics.median(new)
        print(f"{name:28} {mo:13.1f} {mn:9.1f} {mo / mn:6.2f}")
    mo, mn = statistics.median(hops[0]), statistics.median(hops[1])
    print(f"{'reader hop (folder id)':28} {mo:13.1f} {mn:9.1f} {mo / mn:6.2f}   (old: connect+BEGIN event+close)")


if __name__ == "__main__":
    main()
