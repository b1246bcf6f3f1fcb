#!/usr/bin/env python3
"""IMAP under imaptest's stress with several nodes of one host over one PostgreSQL store
(imap.reuse_port: the kernel spreads the connections among them), beside the anchor of
the same sitting: ../shared/anchor/imap_compare.sh stress (our daemon on its embedded
SQLite, and Dovecot), issue 12 §3.

What it answers: whether more processes (each its own GIL, event loop and writer) buy
IMAP throughput on this machine, using the multi-node design that exists, before anyone
builds IMAP worker processes over SQLite. Each node is a whole daemon (`serve`) with its
own MX, submission, web and admin ports; they share the instance folder (keys, PKI) and
the database. PostgreSQL is Debian's, started durable as bench/store_engines.py does,
on a Unix socket in a temporary folder. Same imaptest run as imap_compare.sh's (LOGOUT=0,
10 clients, 20 users, its mbox, seed 123). Run it in a private network namespace:

  unshare -n bash -c 'ip link set lo up; .venv/bin/python bench/imap_nodes.py --nodes 1,2 --secs 20'

Prints one JSON line per run (label, nodes, ops/s, ms per command, imaptest's error lines,
load average) and a summary with the ratios to Dovecot's run of the same sitting.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policy.ins import ins_key  # noqa: E402
from tests.pg import PgServer, pg_bindir  # noqa: E402
from tests.ports import wait_listening  # noqa: E402

COMPARE = ROOT.parent / "shared" / "anchor" / "imap_compare.sh"
if not COMPARE.exists():
    COMPARE = Path("/work/shared/anchor/imap_compare.sh")
IMAPTEST = Path(os.environ.get("IMAPTEST_DIR", "/tmp/imaptest")) / "src" / "imaptest"
RELAY = [sys.executable, "-m", "relay.cli"]
RAISED = {"max_sessions_per_ip": 10000, "max_sessions_per_account": 10000, "command_rate": 1000000,
          "command_burst": 1000000}
# the ports each node moves by 10 * its number (the IMAP ones stay: shared)
OWN_PORTS = {("mx", "listen"), ("submission", "listen"), ("submission", "listen_tls"), ("web", "listen"),
             ("admin", "listen")}


def ins(i: int) -> str:
    """The INS of user i, the same as imap_compare.sh gives its users."""
    base = f"1850775123{i:03d}"
    return f"{base}{ins_key(base):02d}"


def edit_toml(text: str, node: int | None, store_url: str) -> str:
    out, section = [], None
    for line in text.splitlines():
        m = re.match(r"\s*\[([^\]]+)\]", line)
        if m:
            section = m.group(1).strip()
        k = re.match(r"\s*([a-z_]+)\s*=\s*\"?([^\"]*)\"?", line)
        key = k.group(1) if k else None
        if section == "imap" and key in RAISED:
            line = f"{key} = {RAISED[key]}"
        elif section == "imap" and key == "reuse_port":
            line = "reuse_port = true"
        elif section == "store" and key == "url":
            line = f'url = "{store_url}"'
        elif node and (section, key) in OWN_PORTS and k is not None:
            host, port = k.group(2).rsplit(":", 1)
            line = f'{key} = "{host}:{int(port) + 10 * node}"'
        out.append(line)
    return "\n".join(out) + "\n"


def stress_figures(log: str, secs: int) -> dict[str, object]:
    lines = log.splitlines()
    d: dict[str, object] = {"ops_per_s": None}
    if "Totals:" in lines:
        rest = lines[lines.index("Totals:") + 1:]
        names = rest[0].split()
        for line in rest[1:]:
            parts = line.split()
            if len(parts) == len(names) and all(x.isdigit() for x in parts):
                d["ops_per_s"] = round(sum(map(int, parts)) / secs, 1)
                break
        avg = [line.split()[:-2] for line in lines if line.rstrip().endswith("ms/cmd avg")]
        if avg and len(avg[-1]) == len(names):
            d["ms_per_cmd"] = dict(zip(names, map(int, avg[-1])))
    d["error_lines"] = sum(1 for line in lines if "Error:" in line)
    return d


def run_nodes(n: int, work: Path, store_url: str, mbox: Path, secs: int) -> dict[str, object]:
    inst = work / "nodes"
    shutil.rmtree(inst, ignore_errors=True)
    subprocess.run([*RELAY, "init", str(inst)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    base = (inst / "relay.toml").read_text()
    (inst / "relay.toml").write_text(edit_toml(base, None, store_url))
    env = {**os.environ, "MSSANTE_RELAY_CONFIG": str(inst / "relay.toml")}
    users = []
    for i in range(21):
        subprocess.run([*RELAY, "mailbox", "add", ins(i), "--state", "active", "--password-stdin"], cwd=ROOT,
                       env=env, input=b"pass\n", check=True, stdout=subprocess.DEVNULL)
        if i:
            users.append(f"{ins(i)}@patient.mssante.fr:pass")
    (work / "node-users").write_text("\n".join(users) + "\n")
    procs = []
    try:
        for k in range(n):
            cfg = inst / f"relay-node{k}.toml"
            cfg.write_text(edit_toml(base, k, store_url))
            procs.append(subprocess.Popen([*RELAY, "serve", "--config", str(cfg)], cwd=ROOT,
                                          stdout=open(work / f"node{k}.log", "w"), stderr=subprocess.STDOUT))
            if not wait_listening(9325 + 10 * k, 60):  # each node's admin port: it is up
                raise SystemExit(f"node {k} did not start: see {work}/node{k}.log")
        log = work / f"nodes-{n}.log"
        out = subprocess.run([str(IMAPTEST), "host=127.0.0.1", "port=2993", "ssl=any-cert", "user=unused",
                              f"userfile={work / 'node-users'}", f"mbox={mbox}", "clients=10", f"secs={secs}",
                              "seed=123", "logout=0"], capture_output=True, text=True, timeout=secs + 90,
                             env={**os.environ, "LD_LIBRARY_PATH": "/usr/lib/dovecot"})  # its libdovecot
        log.write_text(out.stdout + out.stderr)
        return {"label": f"nodes-{n}", "nodes": n, **stress_figures(out.stdout + out.stderr, secs), "log": str(log),
                "load1": os.getloadavg()[0]}
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", default="1,2", help="node counts to run, in order (default 1,2)")
    p.add_argument("--secs", type=int, default=20)
    a = p.parse_args()
    bindir = pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL is not installed (Debian package postgresql)")
    work = Path(tempfile.mkdtemp(prefix="imap-nodes-"))
    work.chmod(0o755)  # Dovecot's processes (users mail, dovenull) go through it
    # the anchor first: it builds imaptest and writes the mbox both runs use
    cmp = subprocess.run([str(COMPARE), "stress", str(a.secs)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "RELAY": str(ROOT / ".venv/bin/mssante-relay"), "LOGOUT": "0",
                              "REPS": "1", "IMAPCMP_TMP": str(work / "cmp")}, timeout=1800)
    rows = [json.loads(line) for line in cmp.stdout.splitlines() if line.startswith("{")]
    for r in rows:
        r["load1"] = os.getloadavg()[0]
        print(json.dumps(r), flush=True)
    anchor = {r["label"]: r for r in rows}
    results = []
    server = PgServer(bindir)
    server.start(durable=True)
    try:
        server.make_template()
        for n in (int(x) for x in a.nodes.split(",")):
            r = run_nodes(n, work, server.new_database(), work / "cmp" / "test.mbox", a.secs)
            results.append(r)
            print(json.dumps(r), flush=True)
    finally:
        server.stop()
    dove = (anchor.get("dovecot") or {}).get("ops_per_s") or 0
    ours = (anchor.get("ours") or {}).get("ops_per_s") or 0
    summary = {"bench": "imap_nodes", "secs": a.secs, "dovecot_ops_per_s": dove, "sqlite_ops_per_s": ours,
               "sqlite_over_dovecot": round(ours / dove, 2) if dove else None}
    for r in results:
        summary[f"nodes_{r['nodes']}_ops_per_s"] = r["ops_per_s"]
        summary[f"nodes_{r['nodes']}_over_dovecot"] = round((r["ops_per_s"] or 0) / dove, 2) if dove else None
    print(json.dumps(summary), flush=True)
    complete = all(r.get("ops_per_s") for r in [*rows, *results])
    if complete:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"a run gave no figures: its logs are in {work}", file=sys.stderr)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
