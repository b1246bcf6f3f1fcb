"""Writes /etc/mssante-relay/relay.toml for the Debian package from relay/templates/relay.toml.

The template's relative paths are relative to the configuration file; installed, the file
is in /etc (read-only for the daemon under ProtectSystem=strict) and what the daemon and
the CLI write lives in /var/lib/mssante-relay, so every path becomes absolute there. The
development route of the test operator is dropped. Everything else (loopback listeners
included, until the operator sets production ports) is the template's.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

STATE = "/var/lib/mssante-relay"
PATHS = {("tls", "cert"), ("tls", "key"), ("tls", "trust_anchors"), ("trust_list", "path"),
         ("store", "master_key"), ("dkim", "key"), ("delivery", "client_cert"), ("delivery", "client_key"),
         ("archive", "dir"), ("archive", "gnupg_home"),
         ("store", "spool_dir")}
HEADER = f"""\
# /etc/mssante-relay/relay.toml: configuration of the mssante-relay Debian package.
# Paths point into {STATE}, where the package wrote a development PKI, a trust list, the
# master key and the DKIM key at installation: replace the certificates and the trust list
# with the IGC-Sante ones, then set the production listen addresses
# (see /usr/share/doc/mssante-relay/operations.md). Reload: systemctl reload mssante-relay.
"""


def convert(text: str) -> str:
    out, section, seen = [], "", set()
    for line in text.splitlines():
        m = re.match(r"^\[([a-z_]+)\]\s*$", line)
        if m:
            section = m.group(1)
        m = re.match(r'^([a-z_]+) = "([^"]*)"\s*$', line)
        if m and (section, m.group(1)) in PATHS and not m.group(2).startswith("/"):
            line = f'{m.group(1)} = "{STATE}/{m.group(2)}"'
            seen.add((section, m.group(1)))
        elif section == "store" and line.startswith('url = "sqlite+aiosqlite:///relay.db"'):
            line = f'url = "sqlite+aiosqlite:///{STATE}/relay.db"'
            seen.add(("store", "url"))
        elif section == "delivery" and line.startswith("transport = "):
            line = "transport = {}"
            seen.add(("delivery", "transport"))
        out.append(line)
    missing = (PATHS | {("store", "url"), ("delivery", "transport")}) - seen
    if missing:  # the template changed: fail the build rather than ship a relative path
        raise SystemExit(f"conffile.py: not found in the template: {sorted(missing)}")
    body = "\n".join(out[2:]) if out[0].startswith("# mssante-relay configuration") else "\n".join(out)
    return HEADER + body + "\n"


if __name__ == "__main__":
    sys.stdout.write(convert(Path(sys.argv[1]).read_text(encoding="utf-8")))
