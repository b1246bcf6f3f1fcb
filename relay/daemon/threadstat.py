"""What the kernel says of one thread of this process: its CPU time, the time it was
ready to run but waited for a core, and its context switches (Linux /proc, proc(5)).

Why (issue 12 §3): the store writer's thread is busy three quarters of the time under
imaptest's stress, but on the CPU for only a third of it. Its own clock cannot tell
the rest apart; the kernel can: time in the run queue is waiting for a core (the
machine's other threads), a voluntary switch is a wait it chose (the GIL after each
SQLite statement, the fsync, the next batch), an involuntary one a preemption. Read
at scrape time from /proc, so the writer's own path pays nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ThreadSched:
    cpu_seconds: float  # on a core
    runqueue_seconds: float  # runnable, waiting for a core
    voluntary_switches: int  # gave the core up: waited for something
    involuntary_switches: int  # taken off the core by the scheduler


def thread_sched(tid: int, proc: Path = Path("/proc/self/task")) -> ThreadSched | None:
    """The figures of thread `tid` of this process; None where /proc does not have
    them (not Linux, no schedstat in this kernel, the thread is gone)."""
    base = proc / str(tid)
    try:
        run_ns, wait_ns = (int(x) for x in (base / "schedstat").read_text().split()[:2])
        status = (base / "status").read_text()
    except (OSError, ValueError):
        return None
    switches = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            switches[key] = int(value)
    if len(switches) != 2:
        return None
    return ThreadSched(run_ns / 1e9, wait_ns / 1e9, switches["voluntary_ctxt_switches"],
                       switches["nonvoluntary_ctxt_switches"])
