"""How the daemon's interpreter is tuned for the MX's latency (issue 15): the cyclic
garbage collector. A process-wide setting, applied once by the daemon when it serves
(relay/daemon/serve.py), never by the CLI's short commands.

Tried and left out: a shorter GIL switch interval (sys.setswitchinterval 1 ms against
Python's 5), in case the event loop waited for the GIL behind the store's writer
thread after each system call. Alternated runs looked 1.5x faster, but two daemons
measured side by side under the same load (bench/smtp_inbound.py, C=16, 10 KB, load
13-16) gave 60.6 against 63.0 and 68.7 against 61.5 msg/s: no difference shows.
Tried again for IMAP (bench/imap_cpu_per_op.sh, imaptest's stress, 2026-12-06, load
2-3, three interpreters alternated twice): Python's 5 ms gave 1,087, 960, 1,052 and
1,238 operations/s; 0.5 ms gave 1,319, 1,224, 1,151 and 1,096; 0.2 ms gave 1,178 and
971. The spread of one setting covers the others: no difference shows there either."""
from __future__ import annotations

import gc


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
