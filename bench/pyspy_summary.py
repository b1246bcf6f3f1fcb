#!/usr/bin/env python3
"""Summarise a py-spy raw profile (`py-spy record --format raw`, as bench/smtp_inbound.py
--profile writes it): samples per thread, then the functions by inclusive share (a frame
counted once per sample however deep it recurses) and by self share.

  python bench/pyspy_summary.py /tmp/before.txt [--top 30] [--match relay/,mailbox_store/]
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")


def _func(frame: str) -> str:
    """'name (file.py:123)' -> 'name (file.py)': lines of one function add up."""
    return re.sub(r":\d+\)$", ")", frame)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--match", default="", help="comma-separated substrings: list only these frames")
    a = p.parse_args()
    total, threads, incl, selfc = 0, Counter(), Counter(), Counter()
    for line in a.profile.read_text().splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        stack, n = m.group(1).split(";"), int(m.group(2))
        total += n
        thread = re.sub(r"\(\d+\)", "", stack[0]).strip()
        threads[re.sub(r"_\d+$", "_N", thread)] += n
        frames = [_func(f) for f in stack[1:]]
        for f in set(frames):
            incl[f] += n
        if frames:
            selfc[frames[-1]] += n
    keep = [s for s in a.match.split(",") if s]
    print(f"{total} samples")
    print("threads:", ", ".join(f"{t} {100 * n / total:.1f}%" for t, n in threads.most_common(8)))
    for title, c in (("inclusive", incl), ("self", selfc)):
        print(f"\n-- {title} --")
        shown = 0
        for f, n in c.most_common():
            if keep and not any(k in f for k in keep):
                continue
            print(f"{100 * n / total:5.1f}%  {f}")
            shown += 1
            if shown >= a.top:
                break


if __name__ == "__main__":
    main()
