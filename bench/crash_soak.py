#!/usr/bin/env python3
"""Crash soak: SIGKILL the daemon at random moments under load, restart it, and check
that nothing acknowledged was lost or duplicated.

A fresh instance is made the way an operator makes one (`mssante-relay init DIR`,
patients added with `mssante-relay mailbox add`), and run as its own process
(`mssante-relay serve`). Meanwhile, from this process:

- several MX clients (smtplib, STARTTLS with the development operator certificate)
  send professionals' messages to the patients without pause, each carrying a unique
  `X-Soak-Id`;
- submission clients (the patients, AUTH after STARTTLS) answer the professional who
  wrote first, so the outbound queue has work; it delivers to a receiving MX run here
  (aiosmtpd, the operator certificate, ours required) that counts every arrival;
- the daemon is SIGKILLed at a random moment, `PRAGMA integrity_check` is run on the
  file it left, and it is started again; N times, or until --seconds have passed.

Then the clients stop, the queue is given time to drain, the daemon is stopped with
SIGTERM and the store is read back through its API. Checked:

- every message that got `250` (MX) is in its patient's INBOX exactly once; one whose
  reply was lost in the kill ("in doubt") at most once; one refused never;
- every submission that got `250` is in the patient's Sent folder exactly once and was
  delivered to the receiving MX at least once (at-least-once: the count of duplicate
  deliveries is printed, not failed); nothing is left in the queue;
- every integrity check said `ok`; the daemon never wrote a traceback.

One JSON line on stdout; exit status 0 when every check holds. Loopback only, bounded
by --kills and --seconds (and a drain limit).

  python bench/crash_soak.py --kills 30 --seconds 180
  python bench/crash_soak.py --kills 3 --seconds 15 --workdir /tmp/soak   # keeps the instance
"""
from __future__ import annotations

import argparse
import asyncio
import email
import itertools
import json
import logging
import random
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402

from mailbox_store.crypto import MasterKey  # noqa: E402
from mailbox_store.store import Store  # noqa: E402
from policy.ins import ins_key  # noqa: E402
from relay.core.config import load_config  # noqa: E402

OPERATOR = "test-operator.mssante.fr"
PROFESSIONAL = f"dr.martin@{OPERATOR}"
DOMAIN = "patient.mssante.fr"
PASSWORD = "soak password, long enough"
ID_HEADER = "X-Soak-Id"
# aiosmtpd logs a warning on every connection because the receiver requires client
# certificates, which is the point (MSSante operators require ours)
logging.getLogger("mail.log").addFilter(lambda record: "tls_context.verify_mode" not in record.getMessage())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def patients(n: int, seed: int = 11) -> list[str]:
    rnd, out = random.Random(seed), []
    while len(out) < n:
        base = f"{rnd.choice('12')}{rnd.randint(0, 99):02d}{rnd.randint(1, 12):02d}{rnd.randint(1, 95):02d}" \
               f"{rnd.randint(1, 999):03d}{rnd.randint(1, 999):03d}"
        if base[5:7] != "20" and base not in out:
            out.append(base + f"{ins_key(base):02d}")
    return out


# --- the instance ----------------------------------------------------------------------


@dataclass
class Instance:
    dir: Path
    config: Path
    mx: int
    submission: int
    receiver: int
    db: Path
    patients: list[str]

    def cli(self, *args: str, stdin: str | None = None) -> None:
        subprocess.run([sys.executable, "-m", "relay.cli", *args, "--config", str(self.config)], cwd=ROOT,
                       input=stdin, capture_output=True, text=True, check=True, timeout=120)


def make_instance(work: Path, n_patients: int) -> Instance:
    inst = work / "inst"
    subprocess.run([sys.executable, "-m", "relay.cli", "init", str(inst)], cwd=ROOT, capture_output=True,
                   text=True, check=True, timeout=120)
    cfg = inst / "relay.toml"
    mx, sub, receiver = free_port(), free_port(), free_port()
    text = cfg.read_text()
    for old, new in (('listen = "127.0.0.1:2525"', f'listen = "127.0.0.1:{mx}"'),
                     ('listen = "127.0.0.1:2587"', f'listen = "127.0.0.1:{sub}"'),
                     ('listen_tls = "127.0.0.1:2465"', 'listen_tls = "127.0.0.1:0"'),
                     ('listen = "127.0.0.1:2143"', 'listen = "127.0.0.1:0"'),
                     ('listen_tls = "127.0.0.1:2993"', 'listen_tls = "127.0.0.1:0"'),
                     ('listen = "127.0.0.1:9325"', 'listen = "127.0.0.1:0"'),
                     ('"127.0.0.1:2626"', f'"127.0.0.1:{receiver}"'),
                     # a deferred entry is retried within a second, and one the killed daemon
                     # was sending is claimed again once its lease (3 s, not 60) runs out:
                     # the restarted daemon is a new node id (queue_claim.py), so the drain
                     # waited out the whole production lease
                     ("backoff = [60, 300, 900, 1800, 3600, 7200, 14400]", "backoff = [1]"),
                     ("lease = 60", "lease = 3"),
                     ("shutdown_grace = 30", "shutdown_grace = 5"),
                     ('level = "info"', 'level = "warning"')):
        assert old in text, old
        text = text.replace(old, new)
    cfg.write_text(text)
    instance = Instance(inst, cfg, mx, sub, receiver, inst / "relay.db", patients(n_patients))
    for ins in instance.patients:
        instance.cli("mailbox", "add", ins, "--state", "active", "--password-stdin", stdin=PASSWORD + "\n")
    return instance


class Daemon:
    """`mssante-relay serve` as a child process; its stderr kept per start."""

    def __init__(self, instance: Instance):
        self.instance = instance
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    def start(self, timeout: float = 60) -> float:
        log = self.instance.dir / f"daemon-{len(self.logs):03d}.log"
        self.logs.append(log)
        began = time.monotonic()
        with log.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "relay.cli", "serve", "--config",
                                          str(self.instance.config)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                         stderr=err)
        for port in (self.instance.mx, self.instance.submission):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() - began > timeout:
                        self.proc.kill()
                        raise RuntimeError(f"daemon did not start: {log.read_text(errors='replace')[-2000:]}")
                    time.sleep(0.05)
        return time.monotonic() - began

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no cleanup of any kind
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def tracebacks(self) -> int:
        return sum(log.read_text(errors="replace").count("Traceback") for log in self.logs if log.exists())


def integrity(db: Path) -> str:
    """SQLite's own check of the file as a crash left it (the WAL is replayed first)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def queue_depth(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM outbound").fetchone()[0]
    finally:
        conn.close()


# --- the professional's MX that receives our outbound mail ------------------------------


class Receiver:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        soak_id = email.message_from_bytes(envelope.original_content).get(ID_HEADER, "").strip()
        with self.lock:
            self.counts[soak_id] += 1
        return "250 OK queued"


def start_receiver(instance: Instance, handler: Receiver) -> Controller:
    pki = instance.dir / "pki"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "operator.pem", pki / "operator.key")
    ctx.load_verify_locations(cafile=str(pki / "ca.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED  # MSSante: the sender's certificate is required
    controller = Controller(handler, hostname="127.0.0.1", port=instance.receiver, tls_context=ctx,
                            require_starttls=True, decode_data=False, server_hostname=f"mail.{OPERATOR}")
    controller.start()
    return controller


# --- the clients -------------------------------------------------------------------------


@dataclass
class Ledger:
    """What each side was told: ids acknowledged, refused, or in doubt (the connection
    died after the data went out, before the reply came back)."""

    acked: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    doubt: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, bucket: str, soak_id: str) -> None:
        with self.lock:
            getattr(self, bucket).add(soak_id)


def mx_message(soak_id: str, ins: str) -> bytes:
    return (f"From: Dr Martin <{PROFESSIONAL}>\r\nTo: <{ins}@{DOMAIN}>\r\nSubject: Resultats {soak_id}\r\n"
            f"Message-ID: <{soak_id}@{OPERATOR}>\r\n{ID_HEADER}: {soak_id}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nBonjour,\r\nmessage {soak_id}.\r\n").encode()


def reply_message(soak_id: str, ins: str, thread: str) -> bytes:
    return (f"From: <{ins}@{DOMAIN}>\r\nTo: <{PROFESSIONAL}>\r\nSubject: Re: Resultats\r\n"
            f"Message-ID: <{soak_id}@{DOMAIN}>\r\nIn-Reply-To: <{thread}@{OPERATOR}>\r\n"
            f"References: <{thread}@{OPERATOR}>\r\n{ID_HEADER}: {soak_id}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\nMerci docteur ({soak_id}).\r\n").encode()


class Clients:
    def __init__(self, instance: Instance, mx_clients: int, sub_clients: int, seed: int):
        self.instance = instance
        self.mx = Ledger()
        self.sub = Ledger()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.ids = itertools.count()
        self.id_lock = threading.Lock()
        self.rnd = random.Random(seed)
        self.threads_of = (mx_clients, sub_clients)
        pki = instance.dir / "pki"
        self.mx_tls = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        self.mx_tls.load_cert_chain(pki / "operator.pem", pki / "operator.key")
        self.sub_tls = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        self.threads_opened: dict[str, str] = {}

    def next_id(self, kind: str) -> str:
        with self.id_lock:
            return f"{kind}-{next(self.ids):06d}"

    def open_exchanges(self) -> None:
        """The professional writes first to every patient (DESIGN.md §4): then they may answer."""
        for ins in self.instance.patients:
            soak_id = self.next_id("mx")
            with smtplib.SMTP("127.0.0.1", self.instance.mx, local_hostname=f"mail.{OPERATOR}", timeout=60) as s:
                s.starttls(context=self.mx_tls)
                s.ehlo()
                s.sendmail(PROFESSIONAL, [f"{ins}@{DOMAIN}"], mx_message(soak_id, ins))
            self.mx.note("acked", soak_id)
            self.threads_opened[ins] = soak_id

    def start(self) -> None:
        for n in range(self.threads_of[0]):
            self.threads.append(threading.Thread(target=self._loop, args=(self._mx_session, n), daemon=True))
        for n in range(self.threads_of[1]):
            self.threads.append(threading.Thread(target=self._loop, args=(self._sub_session, n), daemon=True))
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(90)

    def _loop(self, session: Any, n: int) -> None:
        rnd = random.Random(n * 7919 + self.rnd.randint(0, 10**6))
        while not self.stop.is_set():
            try:
                session(rnd)
            except (OSError, smtplib.SMTPException):
                pass  # the daemon went away: connect again
            self.stop.wait(0.02)

    def _send(self, s: smtplib.SMTP, ledger: Ledger, mail_from: str, rcpt: str, soak_id: str, raw: bytes) -> None:
        s.mail(mail_from)
        code, reply = s.rcpt(rcpt)
        if code != 250:
            ledger.note("refused", soak_id)
            ledger.errors[f"rcpt {code}"] += 1
            s.rset()
            return
        try:
            s.data(raw)
        except smtplib.SMTPDataError as e:  # a reply, and it was not 250
            ledger.note("refused", soak_id)
            ledger.errors[f"data {e.smtp_code}"] += 1
            return
        except (OSError, smtplib.SMTPException):
            ledger.note("doubt", soak_id)
            raise
        ledger.note("acked", soak_id)

    def _mx_session(self, rnd: random.Random) -> None:
        with smtplib.SMTP("127.0.0.1", self.instance.mx, local_hostname=f"mail.{OPERATOR}", timeout=30) as s:
            s.starttls(context=self.mx_tls)
            s.ehlo()
            for _ in range(rnd.randint(1, 20)):  # new connections too, not only new messages
                if self.stop.is_set():
                    return
                ins = rnd.choice(self.instance.patients)
                soak_id = self.next_id("mx")
                self._send(s, self.mx, PROFESSIONAL, f"{ins}@{DOMAIN}", soak_id, mx_message(soak_id, ins))

    def _sub_session(self, rnd: random.Random) -> None:
        ins = rnd.choice(self.instance.patients)
        with smtplib.SMTP("127.0.0.1", self.instance.submission, local_hostname="patient-laptop", timeout=30) as s:
            s.starttls(context=self.sub_tls)
            s.ehlo()
            s.login(f"{ins}@{DOMAIN}", PASSWORD)
            for _ in range(rnd.randint(5, 30)):  # a login costs a password hash: keep the session
                if self.stop.is_set():
                    return
                soak_id = self.next_id("sub")
                self._send(s, self.sub, f"{ins}@{DOMAIN}", PROFESSIONAL, soak_id,
                           reply_message(soak_id, ins, self.threads_opened[ins]))
                self.stop.wait(rnd.uniform(0, 0.05))


# --- reading back ------------------------------------------------------------------------


async def stored_ids(config: Path, folder: str, ins_list: list[str]) -> Counter[str]:
    cfg = load_config(config)
    store = await Store.open(cfg.store_url, MasterKey.load(cfg.master_key))
    counts: Counter[str] = Counter()
    try:
        for ins in ins_list:
            uids = [m.uid for m in await store.messages(ins, folder)]
            for raw in (await store.fetch_raw_many(ins, folder, uids)).values():
                counts[email.message_from_bytes(raw).get(ID_HEADER, "").strip()] += 1
    finally:
        await store.close()
    return counts


def _once_check(ledger: Ledger, stored: Counter[str]) -> dict[str, int]:
    return {
        "acked": len(ledger.acked),
        "refused": len(ledger.refused),
        "in_doubt": len(ledger.doubt),
        "lost": sum(1 for i in ledger.acked if stored[i] == 0),
        "duplicated": sum(1 for i, n in stored.items() if n > 1),
        "in_doubt_stored": sum(1 for i in ledger.doubt if stored[i] == 1),
        "refused_stored": sum(1 for i in ledger.refused if stored[i]),
        "unknown_stored": sum(n for i, n in stored.items()
                              if i not in ledger.acked and i not in ledger.doubt and i not in ledger.refused),
    }


# --- the run -------------------------------------------------------------------------------


def run_soak(kills: int, seconds: float, mx_clients: int = 4, sub_clients: int = 2, n_patients: int = 3,
             seed: int | None = None, workdir: Path | None = None, drain_seconds: float = 90,
             progress: Any = None) -> dict[str, Any]:
    """The whole soak; returns the summary (its "ok" says whether every check held)."""
    seed = random.randrange(10**9) if seed is None else seed
    rnd = random.Random(seed)
    say = progress or (lambda _msg: None)
    work = workdir or Path(tempfile.mkdtemp(prefix="mssante-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    instance = make_instance(work, n_patients)
    receiver = Receiver()
    controller = start_receiver(instance, receiver)
    daemon = Daemon(instance)
    checks: list[str] = []
    restarts: list[float] = []
    try:
        restarts.append(daemon.start())
        clients = Clients(instance, mx_clients, sub_clients, rnd.randrange(10**9))
        clients.open_exchanges()
        clients.start()
        soak_began = time.monotonic()
        done = 0
        for k in range(kills):
            left = seconds - (time.monotonic() - soak_began)
            if left <= 0:
                break
            # the mean up-time leaves room for the remaining kills and their restarts
            slot = left / (kills - k) - sum(restarts) / len(restarts)
            time.sleep(rnd.uniform(0.05, max(0.3, 2 * slot)))
            daemon.kill()
            done += 1
            checks.append(integrity(instance.db))
            say(f"kill {done}/{kills}: mx acked {len(clients.mx.acked)}, submissions acked "
                f"{len(clients.sub.acked)}, integrity {checks[-1]}")
            restarts.append(daemon.start())
        # let the clients see the last restart through, then stop them
        time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - soak_began))))
        clients.finish()
        soak_seconds = time.monotonic() - soak_began
        # drain: every acknowledged submission delivered, and the queue empty
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline:
            with receiver.lock:
                missing = [i for i in clients.sub.acked if receiver.counts[i] == 0]
            if not missing and queue_depth(instance.db) == 0:
                break
            time.sleep(0.2)
        status = daemon.stop()
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
        controller.stop()
    checks.append(integrity(instance.db))
    inbox = asyncio.run(stored_ids(instance.config, "INBOX", instance.patients))
    sent = asyncio.run(stored_ids(instance.config, "Sent", instance.patients))
    left_in_queue = queue_depth(instance.db)
    mx = _once_check(clients.mx, inbox)
    sub = _once_check(clients.sub, sent)
    delivered = {i: n for i, n in receiver.counts.items() if i.startswith("sub-")}
    sub.update({
        "delivered": sum(1 for i in clients.sub.acked if delivered.get(i)),
        "undelivered": sum(1 for i in clients.sub.acked if not delivered.get(i)),
        # at-least-once: a kill between the peer's 250 and our commit sends it again
        "delivered_twice_or_more": sum(1 for n in delivered.values() if n > 1),
        "extra_deliveries": sum(n - 1 for n in delivered.values() if n > 1),
        "delivered_not_in_sent": sum(1 for i in delivered if sent[i] == 0),
        "in_sent_not_delivered": sum(1 for i, n in sent.items() if n and not delivered.get(i)),
        "left_in_queue": left_in_queue,
    })
    tracebacks = daemon.tracebacks()
    ok = (mx["lost"] == mx["duplicated"] == mx["refused_stored"] == mx["unknown_stored"] == 0
          and sub["lost"] == sub["duplicated"] == sub["refused_stored"] == sub["unknown_stored"] == 0
          and sub["undelivered"] == sub["delivered_not_in_sent"] == sub["in_sent_not_delivered"] == 0
          and left_in_queue == 0 and all(c == "ok" for c in checks) and tracebacks == 0 and status == 0)
    return {
        "bench": "crash_soak", "seed": seed, "kills_requested": kills, "kills": len(checks) - 1,
        "soak_seconds": round(soak_seconds, 1), "total_seconds": round(time.monotonic() - began, 1),
        "restart_seconds_mean": round(sum(restarts) / len(restarts), 2),
        "mx": mx, "submission": sub,
        "integrity_checks": len(checks), "integrity_failures": [c for c in checks if c != "ok"],
        "daemon_tracebacks": tracebacks, "daemon_exit_status": status,
        "mx_errors": dict(clients.mx.errors), "submission_errors": dict(clients.sub.errors),
        "workdir": str(work), "ok": ok,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs (default 10)")
    p.add_argument("--seconds", type=float, default=60, help="time under load and kills (default 60)")
    p.add_argument("--mx-clients", type=int, default=4)
    p.add_argument("--submission-clients", type=int, default=2)
    p.add_argument("--patients", type=int, default=3)
    p.add_argument("--seed", type=int, help="for the kill moments and the clients' choices")
    p.add_argument("--drain-seconds", type=float, default=90, help="longest wait for the queue to empty")
    p.add_argument("--workdir", type=Path, help="keep the instance here (default: a temporary folder)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    a = p.parse_args()
    summary = run_soak(a.kills, a.seconds, a.mx_clients, a.submission_clients, a.patients, a.seed, a.workdir,
                       a.drain_seconds, None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True)))
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
