"""The admin port (127.0.0.1:9325 by default): /metrics for Prometheus and /healthz
for load balancers and monitoring. Never exposed to patients: bind it to loopback or
an operations network.

/healthz answers 200 when every check passes, 503 otherwise, with the details as JSON:
the store answers a query; the store's filesystem has at least store.min_free_bytes
free (below it the MX and submission refuse mail with 452 4.3.1, so a load balancer
should know); our TLS certificate and the trust anchors are valid for at least 14 more
days; the trust list was generated less than trust_list.max_age_days ago.

/metrics also has the store writer's own times (mailbox_store/writer.py WriterTimes),
read at each scrape: `rate(mssante_store_writer_busy_seconds_total[1m])` near 1 means
the single writer is saturated (every write waits for it); busy time that is neither
CPU nor commit is the writer's thread waiting (for the GIL or a core, on a busy daemon).
The kernel's figures of that thread tell which (relay/daemon/threadstat.py, Linux):
`mssante_store_writer_runqueue_seconds_total` grows while it waits for a core (the
machine is short of CPU), its voluntary context switches while it waits for the GIL,
the disk or work.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from cryptography import x509
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric

from relay.core.runtime import Runtime
from relay.core.storefaults import free_space
from relay.daemon.threadstat import thread_sched

log = structlog.get_logger("relay.admin")
CERT_MARGIN = dt.timedelta(days=14)


class _WriterTimes:
    """A Prometheus collector of the store writer's cumulative figures."""

    def __init__(self) -> None:
        self.runtime: Runtime | None = None  # the daemon's (make_app)

    def collect(self) -> Iterator[Metric]:
        writer = getattr(self.runtime.store, "writer", None) if self.runtime is not None else None
        if writer is None:
            return
        t = writer.times
        for name, doc, value in (
                ("batches", "Transactions committed by the store's single writer", writer.batches),
                ("jobs", "Writes applied by the store's writer (a transaction groups several)", writer.jobs),
                ("busy_seconds", "Wall time of the writer's thread inside transactions", t.busy),
                ("cpu_seconds", "CPU time of the writer's thread inside transactions", t.cpu),
                ("commit_seconds", "Time of the writer inside COMMIT (SQLite: the WAL's fsync)", t.commit),
                ("queue_seconds", "Summed over writes: wait from submission to their transaction", t.queued)):
            yield CounterMetricFamily(f"mssante_store_writer_{name}", doc, value=value)
        sched = thread_sched(writer.thread_id) if writer.thread_id is not None else None
        if sched is not None:  # the kernel's figures of the writer's thread (Linux), its whole life
            yield CounterMetricFamily("mssante_store_writer_thread_cpu_seconds",
                                      "CPU time of the writer's thread", value=sched.cpu_seconds)
            yield CounterMetricFamily("mssante_store_writer_runqueue_seconds",
                                      "Time the writer's thread was ready to run but waited for a CPU core",
                                      value=sched.runqueue_seconds)
            switches = CounterMetricFamily(
                "mssante_store_writer_context_switches",
                "Context switches of the writer's thread: voluntary (it waited: the GIL, the disk, work), "
                "involuntary (preempted)", labels=["kind"])
            switches.add_metric(["voluntary"], sched.voluntary_switches)
            switches.add_metric(["involuntary"], sched.involuntary_switches)
            yield switches


WRITER_TIMES = _WriterTimes()
REGISTRY.register(WRITER_TIMES)


def _certificates(paths: list[Path], now: dt.datetime) -> dict[str, Any]:
    worst: tuple[dt.datetime, str] | None = None
    for path in paths:
        for cert in x509.load_pem_x509_certificates(path.read_bytes()):
            end = cert.not_valid_after_utc
            if worst is None or end < worst[0]:
                worst = (end, cert.subject.rfc4514_string())
    if worst is None:
        return {"ok": False, "error": "no certificate"}
    days = (worst[0] - now).total_seconds() / 86400
    return {"ok": worst[0] - now > CERT_MARGIN, "first_expiry": worst[0].isoformat(),
            "subject": worst[1], "days_left": round(days, 1)}


def _trust_list_age(rt: Runtime, now: dt.datetime) -> dict[str, Any]:
    generated = rt.trust.trust.generated
    try:
        when = dt.datetime.fromisoformat(generated.replace("Z", "+00:00"))
    except ValueError:
        return {"ok": False, "error": f"unreadable DateDeGeneration {generated!r}"}
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    age = (now - when).total_seconds() / 86400
    # a list "generated" in the future is as wrong as an old one (5 minutes of clock skew allowed)
    return {"ok": -300 / 86400 <= age <= rt.config.trust_list_max_age_days, "generated": when.isoformat(),
            "age_days": round(age, 2), "entries": rt.trust.trust.entries}


def _store_space(rt: Runtime) -> dict[str, Any]:
    space = free_space(rt.config)
    if space.path is None:
        return {"ok": True, "skipped": "the database is not a local file"}
    if space.free_bytes is None:
        return {"ok": False, "error": "cannot measure the free space of the store's folder"}
    return {"ok": not space.low, "free_bytes": space.free_bytes, "min_free_bytes": space.min_free_bytes}


async def health(rt: Runtime) -> tuple[bool, dict[str, Any]]:
    now = dt.datetime.now(dt.timezone.utc)
    checks: dict[str, Any] = {}
    try:
        await rt.store.ping()
        checks["store"] = {"ok": True}
    except Exception as e:  # any failure of the store is a failed check, reported
        checks["store"] = {"ok": False, "error": type(e).__name__}
    checks["store_space"] = _store_space(rt)
    try:
        checks["certificates"] = _certificates([rt.config.tls_cert, rt.config.trust_anchors], now)
    except (OSError, ValueError) as e:
        checks["certificates"] = {"ok": False, "error": str(e)}
    checks["trust_list"] = _trust_list_age(rt, now)
    ok = all(c.get("ok") for c in checks.values())
    return ok, {"status": "ok" if ok else "fail", "checks": checks}


def make_app(rt: Runtime) -> web.Application:
    WRITER_TIMES.runtime = rt

    async def metrics(_request: web.Request) -> web.Response:
        free_space(rt.config)  # sets mssante_store_free_bytes
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        ok, body = await health(rt)
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


class AdminServer:
    def __init__(self, rt: Runtime):
        self.runner = web.AppRunner(make_app(rt), access_log=None)
        self.rt = rt

    async def start(self) -> int:
        await self.runner.setup()
        listen = self.rt.config.admin_listen
        site = web.TCPSite(self.runner, listen.host, listen.port, reuse_address=True)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("daemon.listening", front="admin", address=f"{listen.host}:{port}")
        return port

    async def stop(self) -> None:
        await self.runner.cleanup()
