"""relay/daemon/serve.py: a SIGTERM that comes while the fronts start, or a second one
during the graceful stop, is a clean stop (exit 0), not the signal's default action (the
process killed, status -15: seen once in test_crash_soak.py, whose supervisor stopped a
daemon it had just restarted); a SIGHUP during start-up is applied once it serves."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relay.ops.instance import init_instance

SCRIPT = r"""
import asyncio, os, signal, sys
from pathlib import Path
from relay.core.config import load_config
from relay.daemon.serve import Daemon

d = Daemon(load_config(Path(sys.argv[1])))
start, stop, reload = d.start, d.stop, d.reload

async def starting():
    os.kill(os.getpid(), signal.SIGHUP)  # a reload asked before anything listens
    os.kill(os.getpid(), signal.SIGTERM)  # and a stop
    await asyncio.sleep(0.05)  # the loop runs the handlers, if there are any
    await start()

async def stopping():
    os.kill(os.getpid(), signal.SIGTERM)  # impatient: again, while it stops
    await asyncio.sleep(0.05)
    await stop()

def reloading():
    print("reloaded", flush=True)
    return reload()

d.start, d.stop, d.reload = starting, stopping, reloading
asyncio.run(d.serve_forever(lambda _: print("ready", flush=True)))
print("stopped", flush=True)
"""


def test_a_stop_during_start_up_or_shutdown_is_clean(tmp_path: Path) -> None:
    cfg = init_instance(tmp_path / "inst")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(cfg)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    said = [line for line in done.stdout.splitlines() if line in ("reloaded", "ready", "stopped")]
    assert said == ["reloaded", "ready", "stopped"], done.stdout[-2000:]  # (the daemon logs there too)
    assert "Traceback" not in done.stderr
