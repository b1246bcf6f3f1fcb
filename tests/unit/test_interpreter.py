"""relay/daemon/interpreter.py: the daemon's start-up heap frozen out of the collector's reach
once it serves."""
from __future__ import annotations

import gc
from pathlib import Path

from relay.core.config import load_config
from relay.ops.instance import init_instance


async def test_the_daemon_freezes_its_start_up_heap_once_it_serves(tmp_path: Path) -> None:
    from relay.daemon.serve import Daemon
    cfg_path = init_instance(tmp_path / "inst")
    gc.unfreeze()
    seen: list[int] = []

    def ready(d: Daemon) -> None:
        seen.append(gc.get_freeze_count())
        d.request_stop()

    try:
        await Daemon(load_config(cfg_path)).serve_forever(ready)
    finally:
        gc.unfreeze()
    assert seen and seen[0] > 10_000  # modules, tables, contexts: the whole start-up heap
