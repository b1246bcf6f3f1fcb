"""A TCP port on 127.0.0.1 for a test to give a daemon or a peer in its configuration,
and the wait until something listens on it.

Chosen below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by
default): the daemons of the tests bind their other fronts to port 0, and the kernel
hands those out of that range. A port picked there by binding 0 and closing could be
handed out again a moment later: a fresh-clone run once failed with the web front's
chosen port already taken by the same daemon's admin port (EADDRINUSE, 2026-12-07).
Below the range, only another test's choice can collide, and the bind check below
skips any port in use right now."""
from __future__ import annotations

import random
import socket
import time

LOW, HIGH = 20000, 32000  # under the ephemeral range's default start (32768)


def free_port() -> int:
    """A port free right now, outside the range the kernel gives to port 0."""
    for _ in range(200):
        port = random.randrange(LOW, HIGH)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free TCP port on 127.0.0.1 between {LOW} and {HIGH}")


def wait_listening(port: int, timeout: float = 30) -> bool:
    """Whether something accepts connections on 127.0.0.1:port within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False
