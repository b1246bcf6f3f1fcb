"""The crash soak of bench/crash_soak.py, short: a real daemon process under MX and
submission load, SIGKILLed a few times at random moments and restarted; every 250 must
be stored exactly once, every acknowledged submission delivered at least once, the
SQLite file intact after each kill. `python bench/crash_soak.py --kills 30` runs it long."""
from __future__ import annotations

import json
import os
from pathlib import Path

from bench.crash_soak import run_soak

KILLS = int(os.environ.get("SOAK_KILLS", "4"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "15"))


def test_nothing_acknowledged_is_lost_or_duplicated_across_sigkills(tmp_path: Path) -> None:
    summary = run_soak(KILLS, SECONDS, mx_clients=3, sub_clients=2, n_patients=2, workdir=tmp_path / "soak")
    detail = json.dumps(summary, indent=1)
    assert summary["kills"] >= min(KILLS, 3), detail
    # load really flowed on both sides, across the kills
    assert summary["mx"]["acked"] > 20 and summary["submission"]["acked"] > 0, detail
    assert summary["mx"]["lost"] == 0 and summary["mx"]["duplicated"] == 0, detail
    assert summary["submission"]["lost"] == 0 and summary["submission"]["undelivered"] == 0, detail
    assert summary["integrity_failures"] == [] and summary["integrity_checks"] == summary["kills"] + 1, detail
    assert summary["ok"], detail
