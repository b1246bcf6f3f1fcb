#!/usr/bin/env python3
"""Webmail load benchmark (issue 11 "Benchmark"), with its IMAP equivalent in the same run.

Fills one mailbox of a fresh instance with N messages through the real MX (STARTTLS with
the operator's client certificate, several connections at once; one message in 250 has a
500 KB PDF, as the Roundcube anchor's mailboxes), starts `mssante-relay serve`, then:

  web   C concurrent sessions (aiohttp), each logged in through the real login form (its
        CSRF token and fields found by their labels "Identifiant" and "Mot de passe"),
        each repeating: the Messagerie list (page 1), one conversation (a random one of
        the list), the download of a 500 KB PDF attachment;
  imap  C concurrent IMAP sessions (aioimaplib over implicit TLS), each repeating the
        equivalent: FETCH of the 50 newest envelopes (FLAGS ENVELOPE), FETCH of one text
        message (BODY.PEEK[]), FETCH of one message with the PDF (BODY.PEEK[]).

The load is the issue's (issue 11 "Benchmark"): 50 sessions on one mailbox of 10,000
messages, and no think time (the issue names none; the Roundcube anchor's
web_load_roundcube.py has none either), so every session always has one request in
flight: a closed loop whose latencies are 50 / throughput shared among the three pages.
Each phase is bounded by -t seconds and by --max-pages requests. Reports per page n,
p50/p99/mean (ms), errors, pages/s, the daemon's CPU per page, and its RSS (current and
peak). Prints one JSON object (the last line of stdout).

  python bench/web_load.py -n 10000 -c 50 -t 60
  python bench/web_load.py --workdir /tmp/wl           # fill an instance there (it stays) ...
  python bench/web_load.py --workdir /tmp/wl --reuse    # ... and measure it again
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import smtplib
import socket
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aioimaplib import aioimaplib  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402

from bench.instance import free_port, new_instance, start_daemon, stop_daemon  # noqa: E402
from mailbox_store.crypto import MasterKey  # noqa: E402
from mailbox_store.store import Store  # noqa: E402
from policy.recipients import MailboxState  # noqa: E402
from relay.core.config import load_config  # noqa: E402
from tests.web.files import pdf  # noqa: E402

INS = "279035121518989"
ADDRESS = f"{INS}@patient.mssante.fr"
PASSWORD = "bench password"
SENDER = "dr.martin@test-operator.mssante.fr"
PDF = pdf("Resultats", size=500 * 1024)
MAX_SECONDS = 3600
MAX_PAGES = 1_000_000
MAX_SESSIONS = 500
# The authenticator counts a login on its account before the slow argon2 check (at most 5
# in flight per account, relay/auth/login.py): the sessions of one patient log in a few at a time.
LOGINS_AT_ONCE = 3
# in the measured loop the list page's links are found with a regular expression (C speed):
# the client shares the machine's two cores with the daemon
LINK = re.compile(r'<a\s[^>]*?href="([^"]+)"[^>]*>(.*?)</a>', re.S)


def message(i: int, every: int) -> bytes:
    m = EmailMessage()
    m["From"] = f"Dr Martin <{SENDER}>"
    m["To"] = ADDRESS
    m["Date"] = "Mon, 23 Nov 2026 10:00:00 +0100"
    m["Message-ID"] = f"<bench-{i}@test-operator.mssante.fr>"
    if i % every == 0:
        m["Subject"] = f"Resultats {i} avec PDF"
        m.set_content("Bonjour, voici vos resultats.\n")
        m.add_attachment(PDF, maintype="application", subtype="pdf", filename=f"resultats-{i}.pdf")
    else:
        m["Subject"] = f"Compte rendu {i}"
        m.set_content("Bonjour, voici le compte rendu.\n" * 40)
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


# --- filling, through the MX --------------------------------------------------------------


async def create_mailbox(cfg: Path) -> None:
    config = load_config(cfg)
    store = await Store.open(config.store_url, MasterKey.load(config.master_key))
    try:
        await store.create_mailbox(INS, MailboxState.ACTIVE, PasswordHasher().hash(PASSWORD))
    finally:
        await store.close()


def fill(inst: Path, mx: int, n: int, every: int, connections: int) -> None:
    ctx = ssl.create_default_context(cafile=str(inst / "pki/ca.pem"))
    ctx.load_cert_chain(inst / "pki/operator.pem", inst / "pki/operator.key")

    def worker(k: int) -> int:
        sent = 0
        with smtplib.SMTP("127.0.0.1", mx, local_hostname="mail.test-operator.mssante.fr", timeout=120) as s:
            s.starttls(context=ctx)
            s.ehlo()
            for i in range(k, n, connections):
                s.sendmail(SENDER, [ADDRESS], message(i, every))
                sent += 1
        return sent

    with ThreadPoolExecutor(connections) as pool:
        total = sum(pool.map(worker, range(connections)))
    assert total == n


# --- HTML: forms and links, found by their labels ----------------------------------------


@dataclass
class Form:
    action: str
    method: str
    inputs: list[dict[str, str]] = field(default_factory=list)


class Page(HTMLParser):
    """Forms (with their inputs), labels (for= and wrapping) and links of one page."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.labels: dict[str, str] = {}  # input id -> label text
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._label: list[Any] = []  # [for_id, text, wrapped input names]
        self._link: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag in ("input", "textarea", "select", "button") and self.forms:
            self.forms[-1].inputs.append({"tag": tag, **a})
            if self._label and "id" not in a:
                a["id"] = f"__wrapped{len(self.labels)}"
                self.forms[-1].inputs[-1]["id"] = a["id"]
            if self._label and not self._label[0]:
                self._label[0] = a["id"]
        elif tag == "label":
            self._label = [a.get("for", ""), ""]
        elif tag == "a" and "href" in a:
            self._link = [a["href"], ""]

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self._label:
            self.labels[self._label[0]] = " ".join(self._label[1].split())
            self._label = []
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], " ".join(self._link[1].split())))
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._label:
            self._label[1] += data
        if self._link is not None:
            self._link[1] += data

    def field(self, form: Form, label: str) -> str | None:
        for i in form.inputs:
            if self.labels.get(i.get("id", ""), "").startswith(label):
                return i.get("name")
        return None

    def form_with(self, label: str) -> Form | None:
        return next((f for f in self.forms if self.field(f, label)), None)


def hidden(form: Form) -> dict[str, str]:
    return {i["name"]: i.get("value", "") for i in form.inputs if i.get("type") == "hidden" and i.get("name")}


# --- the web phase --------------------------------------------------------------------------


@dataclass
class Stats:
    lat: dict[str, list[float]] = field(default_factory=lambda: {})
    errors: dict[str, int] = field(default_factory=lambda: {})

    def add(self, page: str, seconds: float, ok: bool) -> None:
        if ok:
            self.lat.setdefault(page, []).append(seconds)
        else:
            self.errors[page] = self.errors.get(page, 0) + 1

    def count(self) -> int:
        return sum(map(len, self.lat.values())) + sum(self.errors.values())


_gate: dict[int, asyncio.Semaphore] = {}


def login_gate() -> asyncio.Semaphore:
    """One semaphore per event loop (each phase runs its own)."""
    loop = id(asyncio.get_running_loop())
    return _gate.setdefault(loop, asyncio.Semaphore(LOGINS_AT_ONCE))


async def web_login(http: aiohttp.ClientSession, base: str) -> str:
    """Log in through the form; returns the Messagerie URL it leads to."""
    async with http.get(base + "/") as r:
        page = Page(await r.text())
    form = page.form_with("Identifiant")
    if form is None:
        raise RuntimeError("no login form with a field labelled Identifiant")
    data = hidden(form)
    data[page.field(form, "Identifiant") or ""] = ADDRESS
    data[page.field(form, "Mot de passe") or ""] = PASSWORD
    async with http.post(urljoin(base + "/", form.action or "/"), data=data) as r:
        await r.read()
        if r.status != 200 or "Messagerie" not in await r.text():
            raise RuntimeError(f"login refused: HTTP {r.status}")
        return str(r.url)


async def discover(http: aiohttp.ClientSession, base: str, home: str) -> tuple[str, str]:
    """A conversation with a PDF and its download URL: through "Rechercher", else the
    pages of the list (newest first, one message in 250 has the PDF)."""
    async with http.get(home) as r:
        page = Page(await r.text())
    candidates: list[str] = []
    search = page.form_with("Rechercher")
    if search:
        q = hidden(search)
        q[page.field(search, "Rechercher") or "q"] = "avec PDF"
        async with http.get(urljoin(home, search.action or home), params=q) as r:
            candidates = [urljoin(str(r.url), h) for h, t in Page(await r.text()).links if "avec PDF" in t]
    url, pages = home, 0
    while not candidates and url and pages < 20:
        async with http.get(url) as r:
            p = Page(await r.text())
        candidates = [urljoin(str(r.url), h) for h, t in p.links if "avec PDF" in t]
        nxt = [h for h, t in p.links if re.search(r"suivant|plus anciens|next", t, re.I)]
        url, pages = (urljoin(str(r.url), nxt[0]) if nxt else ""), pages + 1
    if not candidates:
        raise RuntimeError("no conversation with a PDF found (search and list pages)")
    async with http.get(candidates[0]) as r:
        conv = Page(await r.text())
        conv_url = str(r.url)
    for href, text in conv.links:
        if ".pdf" in text:
            u = urljoin(conv_url, href)
            async with http.get(u) as r:
                body = await r.read()
                if r.headers.get("Content-Disposition", "").startswith("attachment") and body == PDF:
                    return candidates[0], u
    raise RuntimeError("the conversation has no download link serving the PDF")


async def web_session(base: str, download: str, budget: list[int], stats: Stats, ready: asyncio.Event,
                      logged: list[int], c: int, start: asyncio.Event) -> None:
    ssl_ctx = ssl.create_default_context()
    ssl_ctx.check_hostname = False
    ssl_ctx.verify_mode = ssl.CERT_NONE  # the dev CA names mx.patient.mssante.fr, not 127.0.0.1
    # unsafe=True: aiohttp's cookie jar otherwise ignores cookies of an IP-address host
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=1),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with login_gate():
            home = await web_login(http, base)
        logged[0] += 1
        if logged[0] == c:
            ready.set()
        await start.wait()
        while budget[0] > 0:
            budget[0] -= 3
            t = time.perf_counter()
            ok, convs = False, []
            try:
                async with http.get(home) as r:
                    text = await r.text()
                    ok = r.status == 200
                    convs = [urljoin(home, h) for h, label in LINK.findall(text) if "Compte rendu" in label]
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            stats.add("list", time.perf_counter() - t, ok and bool(convs))
            for page, url in (("conversation", random.choice(convs) if convs else home), ("download", download)):
                t = time.perf_counter()
                ok = False
                try:
                    async with http.get(url) as r:
                        body = await r.read()
                        ok = r.status == 200 and (page != "download" or len(body) == len(PDF))
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                stats.add(page, time.perf_counter() - t, ok)


async def web_phase(base: str, c: int, seconds: float, max_pages: int, pid: int) -> dict[str, Any]:
    ssl_ctx = ssl.create_default_context()
    ssl_ctx.check_hostname = False
    ssl_ctx.verify_mode = ssl.CERT_NONE
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        home = await web_login(http, base)
        _, download = await discover(http, base, home)
    stats, ready, start, logged = Stats(), asyncio.Event(), asyncio.Event(), [0]
    budget = [max_pages]
    tasks = [asyncio.create_task(web_session(base, download, budget, stats, ready, logged, c, start))
             for _ in range(c)]
    done, _ = await asyncio.wait([asyncio.create_task(ready.wait()), *tasks], return_when=asyncio.FIRST_COMPLETED,
                                 timeout=600)
    for t in done:
        if t in tasks and t.exception():
            for other in tasks:
                other.cancel()
            raise RuntimeError(f"a web session failed before the load: {t.exception()}")
    return await measure(tasks, start, seconds, stats, pid)


async def measure(tasks: list[asyncio.Task[None]], start: asyncio.Event, seconds: float, stats: Stats,
                  pid: int) -> dict[str, Any]:
    """Every session is logged in and waiting: open the window, close it after seconds
    (the sessions are cancelled, a request in flight is not counted)."""
    cpu0, t0, me0 = cpu_seconds(pid), time.perf_counter(), os.times()
    start.set()
    await asyncio.wait(tasks, timeout=seconds)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    elapsed, cpu, me = time.perf_counter() - t0, cpu_seconds(pid) - cpu0, os.times()
    out = report(stats, elapsed, cpu)
    out["client_cpu_s"] = round(me.user + me.system - me0.user - me0.system, 1)
    out["loadavg"] = os.getloadavg()
    return out


# --- the IMAP phase -------------------------------------------------------------------------


async def imap_session(port: int, ctx: ssl.SSLContext, uids: tuple[list[int], list[int]], stats: Stats,
                       budget: list[int], ready: asyncio.Event, logged: list[int], c: int,
                       start: asyncio.Event) -> None:
    client = aioimaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=60)
    await client.wait_hello_from_server()
    async with login_gate():
        r = await client.login(ADDRESS, PASSWORD)
    if r.result != "OK":
        raise RuntimeError(f"IMAP login refused: {r.lines}")
    r = await client.select("INBOX")
    exists = next(int(line.split()[0]) for line in (x.decode() if isinstance(x, bytes) else x for x in r.lines)
                  if line.endswith("EXISTS"))
    logged[0] += 1
    if logged[0] == c:
        ready.set()
    await start.wait()
    text_uids, pdf_uids = uids
    try:
        while budget[0] > 0:
            budget[0] -= 3
            for page, command in (("list", ("FETCH", f"{max(1, exists - 49)}:{exists}", "(FLAGS ENVELOPE)")),
                                  ("conversation", ("UID", "FETCH", str(random.choice(text_uids)), "(BODY.PEEK[])")),
                                  ("download", ("UID", "FETCH", str(random.choice(pdf_uids)), "(BODY.PEEK[])"))):
                t = time.perf_counter()
                if command[0] == "UID":
                    r = await client.uid("fetch", command[2], command[3])
                else:
                    r = await client.fetch(command[1], command[2])
                stats.add(page, time.perf_counter() - t, r.result == "OK")
    finally:
        try:
            await asyncio.wait_for(client.logout(), 5)
        except (asyncio.TimeoutError, OSError, aioimaplib.Abort):
            pass


async def imap_uids(port: int, ctx: ssl.SSLContext) -> tuple[list[int], list[int]]:
    """The UIDs of the text messages and of those with the PDF (UID SEARCH by size)."""
    client = aioimaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=120)
    await client.wait_hello_from_server()
    await client.login(ADDRESS, PASSWORD)
    await client.select("INBOX")
    found = []
    for criteria in ("SMALLER 400000", "LARGER 400000"):
        r = await client.uid_search(criteria)
        lines = [x.decode() if isinstance(x, bytes) else x for x in r.lines]
        # aioimaplib hands the untagged "SEARCH n n n" (RFC 9051 §7.2.5) without its keyword
        found.append([int(u) for u in lines[0].removeprefix("SEARCH").split()] if r.result == "OK" and
                     re.fullmatch(r"(SEARCH)?[\d ]*", lines[0]) else [])
    await client.logout()
    if not found[0] or not found[1]:
        raise RuntimeError(f"UID SEARCH found {len(found[0])} text and {len(found[1])} PDF messages")
    return found[0], found[1]


async def imap_phase(port: int, inst: Path, c: int, seconds: float, max_pages: int, pid: int) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=str(inst / "pki/ca.pem"))
    ctx.check_hostname = False
    uids = await imap_uids(port, ctx)
    stats, ready, start, logged, budget = Stats(), asyncio.Event(), asyncio.Event(), [0], [max_pages]
    tasks = [asyncio.create_task(imap_session(port, ctx, uids, stats, budget, ready, logged, c, start))
             for _ in range(c)]
    done, _ = await asyncio.wait([asyncio.create_task(ready.wait()), *tasks], return_when=asyncio.FIRST_COMPLETED,
                                 timeout=600)
    for t in done:
        if t in tasks and t.exception():
            for other in tasks:
                other.cancel()
            raise RuntimeError(f"an IMAP session failed before the load: {t.exception()}")
    return await measure(tasks, start, seconds, stats, pid)


# --- figures --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def report(stats: Stats, elapsed: float, cpu: float) -> dict[str, Any]:
    pages: dict[str, Any] = {}
    for page in ("list", "conversation", "download"):
        lat = sorted(stats.lat.get(page, []))
        pages[page] = {"n": len(lat), "errors": stats.errors.get(page, 0),
                       "p50_ms": round(percentile(lat, 0.5) * 1000, 1) if lat else None,
                       "p99_ms": round(percentile(lat, 0.99) * 1000, 1) if lat else None,
                       "mean_ms": round(sum(lat) / len(lat) * 1000, 1) if lat else None,
                       "per_s": round(len(lat) / elapsed, 1)}
    done = sum(p["n"] for p in pages.values())
    return {"pages": pages, "pages_per_s": round(done / elapsed, 1), "seconds": round(elapsed, 1),
            "errors": sum(stats.errors.values()),
            "server_cpu_ms_per_page": round(cpu * 1000 / done, 2) if done else None}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[{"VmRSS": "rss_mib", "VmHWM": "peak_rss_mib"}[key]] = int(value.split()[0]) // 1024
    return out


def wait_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--messages", type=int, default=10_000)
    ap.add_argument("-c", "--sessions", type=int, default=50)
    ap.add_argument("-t", "--seconds", type=float, default=60)
    ap.add_argument("--max-pages", type=int, default=200_000, help="requests per phase at most")
    ap.add_argument("--pdf-every", type=int, default=250)
    ap.add_argument("--fill-connections", type=int, default=8)
    ap.add_argument("--workdir", type=Path, help="instance folder (default: a new temporary one)")
    ap.add_argument("--reuse", action="store_true", help="measure the filled instance of --workdir again")
    ap.add_argument("--skip-imap", action="store_true")
    a = ap.parse_args()
    if not (0 < a.seconds <= MAX_SECONDS and 0 < a.sessions <= MAX_SESSIONS and 0 < a.max_pages <= MAX_PAGES):
        ap.error(f"bounds: 0 < -t <= {MAX_SECONDS}, 0 < -c <= {MAX_SESSIONS}, 0 < --max-pages <= {MAX_PAGES}")
    mx, imaps, web = free_port(), free_port(), free_port()
    if a.reuse:
        if not a.workdir:
            ap.error("--reuse needs --workdir")
        cfg = a.workdir / "inst/relay.toml"
        text = cfg.read_text()
        text = re.sub(r'(\[mx\][^\[]*?listen = )"[^"]*"', rf'\1"127.0.0.1:{mx}"', text)
        text = re.sub(r'listen_tls = "127.0.0.1:\d+"', f'listen_tls = "127.0.0.1:{imaps}"', text, count=1)
        text = re.sub(r'(\[web\][^\[]*?listen = )"[^"]*"', rf'\1"127.0.0.1:{web}"', text)
        cfg.write_text(text)
        fill_s = None
    else:
        if a.workdir:
            a.workdir.mkdir(parents=True, exist_ok=True)
        # 50 IMAP sessions for one account: above the default per-account limit (20)
        # C IMAP sessions of one account from one address: above the default limits (20, 50)
        cfg = new_instance("mssante-webload-", mx=mx, imaps=imaps, workdir=a.workdir,
                           extra={"max_sessions_per_account = 20": "max_sessions_per_account = 1000"})
        text = cfg.read_text()
        section = re.search(r"^\[web\][^\[]*", text, re.M)
        if section:
            body = re.sub(r'^listen\s*=\s*"[^"]*"', f'listen = "127.0.0.1:{web}"', section.group(0), count=1,
                          flags=re.M)
            text = text[:section.start()] + body + text[section.end():]
        else:
            text += f'\n[web]\nlisten = "127.0.0.1:{web}"\n'
        text = text.replace("max_sessions_per_ip = 50\n", "max_sessions_per_ip = 1000\n")
        cfg.write_text(text)
        asyncio.run(create_mailbox(cfg))
    inst = cfg.parent
    daemon = start_daemon(cfg, mx)
    wait_port(web)  # the web front starts after the MX (a --reuse run has no fill in between)
    out: dict[str, Any] = {"bench": "web_load", "messages": a.messages, "sessions": a.sessions,
                           "seconds_per_phase": a.seconds, "pdf_bytes": len(PDF)}
    try:
        if not a.reuse:
            t0 = time.perf_counter()
            fill(inst, mx, a.messages, a.pdf_every, a.fill_connections)
            fill_s = time.perf_counter() - t0
            out["fill_s"] = round(fill_s, 1)
            out["fill_msgs_per_s"] = round(a.messages / fill_s, 1)
        base = f"https://127.0.0.1:{web}"
        try:
            out["web"] = asyncio.run(web_phase(base, a.sessions, a.seconds, a.max_pages, daemon.pid))
        except (RuntimeError, OSError, aiohttp.ClientError) as e:
            out["web"] = {"error": str(e)}
        out["rss_after_web"] = rss_mib(daemon.pid)
        if not a.skip_imap:
            out["imap"] = asyncio.run(imap_phase(imaps, inst, a.sessions, a.seconds, a.max_pages, daemon.pid))
        out["rss_end"] = rss_mib(daemon.pid)
    finally:
        err = stop_daemon(daemon)
    if "Traceback" in err:
        out["daemon_stderr_tail"] = err[-2000:]
    web_pages, imap_pages = out.get("web", {}).get("pages"), out.get("imap", {}).get("pages")
    if web_pages and imap_pages:
        out["web_over_imap_p99"] = {p: round(web_pages[p]["p99_ms"] / imap_pages[p]["p99_ms"], 2)
                                    for p in web_pages if web_pages[p]["p99_ms"] and imap_pages[p]["p99_ms"]}
    print(json.dumps(out, ensure_ascii=False), flush=True)
    return 0 if "pages" in out.get("web", {}) else 1


if __name__ == "__main__":
    sys.exit(main())
