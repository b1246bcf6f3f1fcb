"""mailbox_store/reader.py: light reads are taken before waiting message reads, on the
same bounded threads; closing runs what is queued, then refuses."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text

from mailbox_store.reader import Reader


def _reader(tmp_path: Path, threads: int) -> Reader:
    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}", pool_size=threads, max_overflow=0,
                           connect_args={"check_same_thread": False})
    return Reader(engine, threads=threads)


async def test_a_light_read_overtakes_the_waiting_message_reads(tmp_path: Path) -> None:
    reader = _reader(tmp_path, threads=1)
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def busy(conn: Connection) -> str:
        started.set()
        release.wait(30)
        order.append("busy")
        return "busy"

    def read(name: str):  # type: ignore[no-untyped-def]
        def fn(conn: Connection) -> int:
            order.append(name)
            return int(conn.execute(text("select 1")).scalar_one())
        return fn

    try:
        first = asyncio.ensure_future(reader.run(busy))
        assert await asyncio.to_thread(started.wait, 30)  # the only thread is taken
        queued = [asyncio.ensure_future(reader.run(read(f"message{i}"))) for i in range(3)]
        light = asyncio.ensure_future(reader.run_light(read("light")))
        await asyncio.sleep(0.05)  # all four are queued behind `busy`
        release.set()
        assert await asyncio.gather(first, *queued, light) == ["busy", 1, 1, 1, 1]
        # FIFO among message reads, the light one before all of them
        assert order == ["busy", "light", "message0", "message1", "message2"]
    finally:
        release.set()
        reader.close()


async def test_errors_reach_the_caller_and_close_drains_then_refuses(tmp_path: Path) -> None:
    reader = _reader(tmp_path, threads=2)

    def fails(conn: Connection) -> None:
        raise ValueError("bad read")

    with pytest.raises(ValueError, match="bad read"):
        await reader.run(fails)
    with pytest.raises(ValueError, match="bad read"):
        await reader.run_light(fails)
    pending = [asyncio.ensure_future(reader.run(lambda c: c.execute(text("select 2")).scalar_one()))
               for _ in range(5)]
    await asyncio.sleep(0)
    await asyncio.to_thread(reader.close)
    assert await asyncio.gather(*pending) == [2] * 5
    with pytest.raises(RuntimeError):
        await reader.run_light(lambda c: 1)


async def test_a_read_cancelled_before_its_turn_never_runs(tmp_path: Path) -> None:
    reader = _reader(tmp_path, threads=1)
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def busy(conn: Connection) -> None:
        started.set()
        release.wait(30)

    try:
        first = asyncio.ensure_future(reader.run(busy))
        assert await asyncio.to_thread(started.wait, 30)
        waiting = asyncio.ensure_future(reader.run(lambda c: ran.append("cancelled")))
        await asyncio.sleep(0.05)
        waiting.cancel()
        release.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await reader.run_light(lambda c: c.execute(text("select 3")).scalar_one()) == 3
        assert ran == []
    finally:
        release.set()
        reader.close()


async def test_many_reads_at_once_all_run_on_few_threads(tmp_path: Path) -> None:
    """Threads that finish a job take the next without being woken; none is lost."""
    reader = _reader(tmp_path, threads=2)
    try:
        values = await asyncio.gather(*(
            (reader.run if i % 3 else reader.run_light)(lambda c, i=i: c.execute(text(f"select {i}")).scalar_one())
            for i in range(500)))
        assert values == list(range(500))
        for _ in range(20):  # the threads sleep between bursts, and wake for the next
            await asyncio.sleep(0.01)
            assert await reader.run(lambda c: c.execute(text("select 7")).scalar_one()) == 7
    finally:
        await asyncio.to_thread(reader.close)
