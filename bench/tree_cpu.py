#!/usr/bin/env python3
"""CPU seconds used so far by process trees: the anchor's Postfix and Dovecot masters
and everything under them, so its CPU per message can be compared with our daemon's
own (bench/smtp_inbound.py), not with the whole host's, which other jobs on a shared
machine inflate.

  python bench/tree_cpu.py PIDFILE     (KEY=PID lines, as anchor_stack.sh writes them)
  python bench/tree_cpu.py 123 456

A tree's time is each living process's user+system time plus that of its children
already reaped (/proc/PID/stat cutime, cstime): a child that exits between two readings
moves from the first sum to its parent's, so differences of two readings are exact.
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds including reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(roots: list[int]) -> float:
    children: dict[int, list[int]] = defaultdict(list)
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children[st[0]].append(int(entry))
                cpu[int(entry)] = st[1]
    total, todo, seen = 0.0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in cpu:
            continue
        seen.add(pid)
        total += cpu[pid]
        todo.extend(children.get(pid, ()))
    return total


def main() -> None:
    pids: list[int] = []
    for arg in sys.argv[1:]:
        if arg.isdigit():
            pids.append(int(arg))
        else:
            pids += [int(v) for line in Path(arg).read_text().splitlines()
                     if "=" in line and (v := line.split("=", 1)[1].strip()).isdigit()]
    print(f"{tree_cpu(pids):.2f}")


if __name__ == "__main__":
    main()
