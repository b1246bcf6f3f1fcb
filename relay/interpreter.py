"""How the daemon's interpreter is tuned for the MX's latency (issue 15): the GIL's
switch interval and the cyclic garbage collector. Process-wide settings, applied once
by the daemon's runtime (relay/runtime.py), never by the CLI's short commands."""
from __future__ import annotations

import gc
import sys


def set_gil_switch(ms: float) -> None:
    """How long a thread running Python keeps the GIL while another waits for it
    (sys.setswitchinterval; Python's default is 5 ms).

    Why: the event loop gives the GIL up at every system call (each SMTP reply's send,
    each read, epoll) and must then wait for it while the store's writer thread, a
    parse or a crypto thread runs Python: up to a whole interval per system call, and a
    10 KB message makes a dozen of them. py-spy showed the loop's time pile up at such
    points (uuid4's getrandom alone 2% of the samples). Measured with
    bench/smtp_inbound.py -c 16 -n 2000 -s 10240, runs alternated in one sitting, load
    13-15 from other jobs (2026-12-06): 5 ms gave 78.6 / 66.8 / 89.3 msg/s (p99 680 /
    927 / 601 ms); 1 ms gave 147.4 / 112.2 / 121.8 msg/s (p99 590 / 555 / 368 ms), with
    the same CPU per message. Shorter intervals cost more switches between busy
    threads; 1 ms is the default ([workers] gil_switch_ms)."""
    sys.setswitchinterval(ms / 1000)


def freeze_startup_heap() -> None:
    """Move every object alive after start-up (modules, SQLAlchemy's tables and
    compiled statements, the trust list, TLS contexts) out of the collector's reach
    (gc.freeze): a full collection then walks only what the traffic allocates.

    Why: a full collection walked the whole start-up heap while every session waited;
    the daemon's collector pauses over one bench/smtp_inbound.py run at 10 KB (load
    15 from other jobs, 2026-12-06): 1.27 s in all and 1.05 s for the longest, against
    0.71 s and 0.29 s frozen. The frozen objects are never freed, which is what they
    are for: they live as long as the daemon."""
    gc.collect()
    gc.freeze()
