"""systemd's notify protocol (sd_notify(3)), spoken over its documented socket: one
datagram of "KEY=VALUE" lines to $NOTIFY_SOCKET. Without that variable (not started
by systemd) every call does nothing.

READY=1 once the listeners are open; RELOADING=1 with MONOTONIC_USEC (systemd >= 253
requires it for Type=notify-reload, older ones ignore it) then READY=1 after a SIGHUP;
STOPPING=1 at SIGTERM; WATCHDOG=1 every half of $WATCHDOG_USEC while the event loop
runs, so a wedged loop gets the service restarted.
"""
from __future__ import annotations

import asyncio
import os
import socket
import time

import structlog

log = structlog.get_logger("relay.systemd")


def notify(*states: str) -> bool:
    """Send the states; True when a notify socket was there to receive them."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall("\n".join(states).encode())
    except OSError as e:
        log.warning("systemd.notify_failed", error=str(e))
        return False
    return True


def ready(status: str) -> None:
    notify("READY=1", f"STATUS={status}")


def reloading() -> None:
    notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def stopping() -> None:
    notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd asked for, in seconds (sd_watchdog_enabled)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def watchdog() -> None:
    """Ping while the event loop is alive (cancel the task to stop)."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
