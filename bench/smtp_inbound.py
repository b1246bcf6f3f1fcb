#!/usr/bin/env python3
"""Inbound SMTP benchmark: our MX, end to end into the encrypted store.

Starts a fresh `mssante-relay init` instance on loopback, creates the recipients'
mailboxes, then drives it with the SAME load generator as the anchor
(../shared/anchor/smtp_load.py: C concurrent STARTTLS connections with the operator
certificate, N messages of S bytes): one warm-up pass, then the measured pass. Our 250
means "durably in the mailbox", so its msgs_per_s compares with the anchor's
end-to-end rate (Postfix queue -> LMTP -> Dovecot Maildir).

Afterwards every accepted message is verified to be stored (count per mailbox, and a
sample decrypted). Prints one JSON line per pass and a summary. Loopback only; every
pass is bounded by -n and by the generator's own time limit.

  python bench/smtp_inbound.py -c 16 -n 3000 -s 10240
  python bench/smtp_inbound.py -c 16 -n 300 -s 512000 --attach
  python bench/smtp_inbound.py -c 16 -n 300 -s 512000 --attach --thread-cpu   (where the CPU goes)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mailbox_store.crypto import MasterKey  # noqa: E402
from mailbox_store.store import Store  # noqa: E402
from policy.ins import ins_key  # noqa: E402
from policy.recipients import MailboxState  # noqa: E402
from relay.core.config import load_config  # noqa: E402
from bench.instance import free_port, new_instance, start_daemon, stop_daemon  # noqa: E402

DEFAULT_LOADGEN = ROOT.parent / "shared/anchor/smtp_load.py"


def make_rcpts(n: int, seed: int = 7) -> list[str]:
    """n distinct valid INS (the anchor run used the same recipe and seed)."""
    rnd, out = random.Random(seed), []
    seen: set[str] = set()
    while len(out) < n:
        dept = rnd.randint(1, 95)
        while dept == 20:
            dept = rnd.randint(1, 95)
        base = (f"{rnd.randint(1, 2)}{rnd.randint(0, 99):02d}{rnd.randint(1, 12):02d}{dept:02d}"
                f"{rnd.randint(1, 999):03d}{rnd.randint(1, 999):03d}")
        if base not in seen:
            seen.add(base)
            out.append(base + f"{ins_key(base):02d}")
    return out


async def _store_op(cfg_path: Path, fn):  # type: ignore[no-untyped-def]
    config = load_config(cfg_path)
    store = await Store.open(config.store_url, MasterKey.load(config.master_key))
    try:
        return await fn(store)
    finally:
        await store.close()


async def _create(store: Store, rcpts: list[str]) -> None:
    for ins in rcpts:
        await store.create_mailbox(ins, MailboxState.ACTIVE)


async def _count(store: Store, rcpts: list[str]) -> tuple[int, int]:
    total = 0
    for ins in rcpts:
        total += len(await store.messages(ins))
    # decrypt a sample: the stored bytes are whole messages
    sample = 0
    for ins in rcpts[:5]:
        for m in (await store.messages(ins))[:3]:
            raw = await store.fetch_raw(ins, "INBOX", m.uid)
            assert b"\r\nSubject: bench message" in raw and raw.endswith(b"\r\n"), "corrupt message"
            sample += 1
    return total, sample


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds of a process and its reaped children (/proc/PID/stat utime..cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def thread_ticks(pid: int) -> dict[str, tuple[int, int]]:
    """(user, system) clock ticks of each thread of a process, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = task.joinpath("stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[task.name] = (int(fields[11]), int(fields[12]))
    return out


def thread_names(pid: int) -> dict[str, str]:
    """Thread id -> Python thread name, from `py-spy dump` (Python 3.11 does not name
    its threads for the OS); empty without py-spy."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    try:
        dump = subprocess.run([exe, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60,
                              check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {m.group(1): m.group(2) for m in re.finditer(r'Thread (\d+) \(\w+\): "([^"]+)"', dump)}


def per_thread_ms(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
                  names: dict[str, str], messages: int) -> dict[str, list[float]]:
    """[user, system] CPU ms per message of each thread kind (a pool's threads added up)."""
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    out: dict[str, list[float]] = {}
    for tid, (user, system) in after.items():
        user0, system0 = before.get(tid, (0, 0))
        if user - user0 + system - system0 <= 0:
            continue
        kind = re.sub(r"_\d+$", "", re.sub(r"^Thread-\d+ ", "", names.get(tid, "thread")))
        acc = out.setdefault(kind, [0.0, 0.0])
        acc[0] += (user - user0) * tick_ms / messages
        acc[1] += (system - system0) * tick_ms / messages
    return {k: [round(u, 2), round(sy, 2)] for k, (u, sy) in sorted(out.items(), key=lambda kv: -sum(kv[1]))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("-n", "--messages", type=int, default=3000)
    p.add_argument("-s", "--size", type=int, default=10240)
    p.add_argument("-t", "--max-seconds", type=float, default=300)
    p.add_argument("--attach", action="store_true", help="multipart with a PDF-like attachment")
    p.add_argument("--warmup", type=int, default=None, help="messages of the warm-up pass (default n/6)")
    p.add_argument("--recipients", type=int, default=100)
    p.add_argument("--rcpt-file", type=Path, help="INS list (default: 100 generated with the anchor's seed)")
    p.add_argument("--loadgen", type=Path, default=DEFAULT_LOADGEN)
    p.add_argument("--python", default=sys.executable, help="interpreter with aiosmtplib for the generator")
    p.add_argument("--workdir", type=Path, help="keep the instance here (default: a temporary folder)")
    p.add_argument("--store-url", help="store.url of the instance (default: its SQLite file); a PostgreSQL "
                   "database must be at head already (bench/store_engines.py makes one)")
    p.add_argument("--parse-mode", choices=("threads", "processes"), default=None,
                   help="[workers] parse_mode of the instance (default: the template's)")
    p.add_argument("--replace", nargs=2, action="append", default=[], metavar=("OLD", "NEW"),
                   help="edit the instance's relay.toml (e.g. 'gil_switch_ms = 1.0' 'gil_switch_ms = 5')")
    p.add_argument("--thread-cpu", action="store_true", help="also report the measured pass's CPU per "
                   "message of each daemon thread kind (event loop, writer, pools), user and system")
    p.add_argument("--profile-idle", action="store_true", help="with --profile: sample waiting threads too "
                   "(where the wall-clock time of a message goes, not only its CPU)")
    p.add_argument("--profile", type=Path, help="py-spy record the daemon during the measured pass into "
                   "this file (raw collapsed stacks; needs py-spy beside the interpreter or on PATH)")
    a = p.parse_args()
    if not a.loadgen.exists():
        sys.exit(f"load generator not found: {a.loadgen} (the shared/ folder sits beside the project)")

    port = free_port()
    extra = {}
    if a.store_url:
        extra['url = "sqlite+aiosqlite:///relay.db"'] = f'url = "{a.store_url}"'
    if a.parse_mode:
        extra['parse_mode = "threads"'] = f'parse_mode = "{a.parse_mode}"'
    extra.update(dict(a.replace))
    cfg = new_instance("mssante-bench-", mx=port, workdir=a.workdir, extra=extra)
    inst, work = cfg.parent, cfg.parent.parent
    rcpts = ([line.strip() for line in a.rcpt_file.read_text().split() if line.strip()]
             if a.rcpt_file else make_rcpts(a.recipients))
    rcpt_file = work / "rcpts.txt"
    rcpt_file.write_text("\n".join(rcpts) + "\n")
    asyncio.run(_store_op(cfg, lambda s: _create(s, rcpts)))
    daemon = start_daemon(cfg, port, stderr=subprocess.PIPE)

    pki = inst / "pki"
    base_cmd = [a.python, str(a.loadgen), "--port", str(port), "-c", str(a.concurrency),
                "-s", str(a.size), "-t", str(a.max_seconds),
                "--pki", str(pki), "--ca", str(pki / "ca.pem"), "--cert", str(pki / "operator.pem"),
                "--key", str(pki / "operator.key"), "--sender", "bench@test-operator.mssante.fr",
                "--helo", "mail.test-operator.mssante.fr", "--rcpt-file", str(rcpt_file)]
    if a.attach:
        base_cmd.append("--attach")
    results = {}
    accepted_total = 0
    try:
        for label, n in (("warmup", a.warmup or max(a.messages // 6, 50)), ("measured", a.messages)):
            spy = None
            if a.profile and label == "measured":
                exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                spy = subprocess.Popen([exe, "record", "--pid", str(daemon.pid), "--format", "raw",
                                        "--rate", "200", "--threads", "--nonblocking", "-o", str(a.profile),
                                        *(["--idle"] if a.profile_idle else [])],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cpu0 = proc_cpu_s(daemon.pid)
            ticks0 = thread_ticks(daemon.pid)
            out = subprocess.run([*base_cmd, "-n", str(n), "--label", label], capture_output=True,
                                 text=True, timeout=a.max_seconds + 120)
            cpu1 = proc_cpu_s(daemon.pid)
            ticks1 = thread_ticks(daemon.pid)
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=60)
            if out.returncode != 0:
                sys.exit(f"load generator failed: {out.stderr[-2000:]}")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            res["label"] = label
            if cpu0 is not None and cpu1 is not None and res["accepted"]:
                # the daemon's own CPU (all its threads), not the host's: other work on a
                # shared machine does not count here
                res["daemon_cpu_ms_per_msg"] = round(1000 * (cpu1 - cpu0) / res["accepted"], 2)
                if a.thread_cpu:
                    res["thread_cpu_ms_per_msg"] = per_thread_ms(ticks0, ticks1, thread_names(daemon.pid),
                                                                 res["accepted"])
            results[label] = res
            accepted_total += res["accepted"]
            print(json.dumps(res), flush=True)
        rss = rss_kib(daemon.pid)
    finally:
        err = stop_daemon(daemon)
    if daemon.returncode != 0:
        print(f"daemon exited with {daemon.returncode}: {err[-2000:]}", file=sys.stderr)
    stored, sampled = asyncio.run(_store_op(cfg, lambda s: _count(s, rcpts)))
    m = results["measured"]
    summary = {
        "bench": "smtp_inbound", "engine": load_config(cfg).store_url.split(":", 1)[0], "c": a.concurrency, "n": a.messages, "size": a.size, "attach": a.attach,
        "msgs_per_s": m["msgs_per_s"], "daemon_cpu_ms_per_msg": m.get("daemon_cpu_ms_per_msg"), "p50_ms": m["p50_ms"], "p99_ms": m["p99_ms"],
        "accepted": m["accepted"], "failed": m["failed"], "errors": m.get("errors"),
        "stored_total": stored, "accepted_total": accepted_total, "all_stored": stored == accepted_total,
        "sample_decrypted": sampled, "daemon_peak_rss_mib": round(rss / 1024, 1) if rss else None,
        "host_cpu_busy_pct": m.get("host_cpu_busy_pct"), "parse_mode": a.parse_mode or "template",
        "thread_cpu_ms_per_msg": m.get("thread_cpu_ms_per_msg"),
    }
    print(json.dumps(summary), flush=True)
    print(f"\n{a.concurrency} connections, {m['params']['msg_bytes']} B messages: "
          f"{m['msgs_per_s']} msg/s stored, p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms; "
          f"{stored}/{accepted_total} accepted messages found in the store", file=sys.stderr)
    return 0 if stored == accepted_total and daemon.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
