"""relay/daemon/threadstat.py: a thread's CPU, run-queue wait and switches from /proc."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from relay.daemon.threadstat import thread_sched


def test_reads_this_threads_figures() -> None:
    before = thread_sched(threading.get_native_id())
    assert before is not None  # the suite runs on Linux
    deadline = time.thread_time() + 0.05
    while time.thread_time() < deadline:  # bounded: 50 ms of this thread's CPU
        pass
    time.sleep(0.01)  # a voluntary switch
    after = thread_sched(threading.get_native_id())
    assert after is not None
    assert after.cpu_seconds - before.cpu_seconds >= 0.04
    assert after.voluntary_switches > before.voluntary_switches
    assert after.runqueue_seconds >= before.runqueue_seconds >= 0


def test_parses_proc_and_says_none_when_it_cannot(tmp_path: Path) -> None:
    task = tmp_path / "42"
    task.mkdir()
    (task / "schedstat").write_text("2500000000 750000000 1234\n")
    (task / "status").write_text("Name:\tpython\nvoluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t3\n")
    got = thread_sched(42, proc=tmp_path)
    assert got is not None
    assert (got.cpu_seconds, got.runqueue_seconds, got.voluntary_switches, got.involuntary_switches) == \
        (2.5, 0.75, 17, 3)
    assert thread_sched(43, proc=tmp_path) is None  # no such thread
    (task / "status").write_text("Name:\tpython\n")  # a kernel without the counters
    assert thread_sched(42, proc=tmp_path) is None
    (task / "schedstat").write_text("garbage\n")
    assert thread_sched(42, proc=tmp_path) is None
