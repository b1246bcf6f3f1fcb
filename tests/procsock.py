"""Which process holds the server end of a loopback TCP connection (Linux /proc): for
tests of several processes accepting on one socket (imap.processes)."""
from __future__ import annotations

import os
from pathlib import Path


def _inode(server_port: int, client_port: int) -> str | None:
    """The socket inode of the server end of 127.0.0.1:client_port -> :server_port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return inode
    return None


def serving_pid(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the accepted socket of that connection (None: none of them)."""
    inode = _inode(server_port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None
