"""The admin port: Prometheus /metrics and /healthz, read with a real HTTP client."""
from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certs.pki import _name, issue, key_pem, load_ca, write_private
from certs.trustlist import render_trust_list
from tests.integration.conftest import INS_UNKNOWN, SENDER, RunningDaemon, message


def _get(relay: RunningDaemon, path: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{relay.daemon.admin_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_messages_sessions_and_logins(relay: RunningDaemon) -> None:
    before = _get(relay, "/metrics")[1].decode()
    relay.deliver(message())
    with relay.smtp() as s:
        s.mail(SENDER)
        s.rcpt(f"{INS_UNKNOWN}@patient.mssante.fr")
    c = relay.imap()
    code, body = _get(relay, "/metrics")
    after = body.decode()
    c.logout()
    assert code == 200
    assert _metric(after, "mssante_mx_messages_total", result="accepted") - \
        _metric(before, "mssante_mx_messages_total", result="accepted") == 1
    assert _metric(after, "mssante_mx_messages_total", result="refused", code="550", rule="unknown_mailbox") - \
        _metric(before, "mssante_mx_messages_total", result="refused", code="550", rule="unknown_mailbox") == 1
    assert _metric(after, "mssante_imap_sessions") >= 1
    assert _metric(after, "mssante_auth_attempts_total", result="ok") >= 1
    assert _metric(after, "mssante_mx_store_seconds_count") >= 1
    assert "mssante_imap_command_seconds_bucket" in after
    # the store writer's own figures: the accepted message was one of its writes
    assert _metric(after, "mssante_store_writer_jobs_total") - _metric(before, "mssante_store_writer_jobs_total") >= 1
    assert _metric(after, "mssante_store_writer_batches_total") >= 1
    busy = _metric(after, "mssante_store_writer_busy_seconds_total")
    assert busy > 0 and 0 < _metric(after, "mssante_store_writer_commit_seconds_total") <= busy
    assert 0 < _metric(after, "mssante_store_writer_cpu_seconds_total")
    assert _metric(after, "mssante_store_writer_queue_seconds_total") > 0
    # and the kernel's of its thread (Linux): on a core, waiting for one, switches
    assert _metric(after, "mssante_store_writer_thread_cpu_seconds_total") > 0
    assert _metric(after, "mssante_store_writer_runqueue_seconds_total") >= 0
    assert _metric(after, "mssante_store_writer_context_switches_total", kind="voluntary") > 0


def test_healthz_ok(relay: RunningDaemon) -> None:
    code, body = _get(relay, "/healthz")
    health = json.loads(body)
    assert code == 200 and health["status"] == "ok", health
    assert set(health["checks"]) == {"store", "store_space", "certificates", "trust_list"}
    assert health["checks"]["certificates"]["days_left"] > 14


def test_healthz_fails_on_an_old_trust_list_and_a_certificate_about_to_expire(relay: RunningDaemon) -> None:
    base: Path = relay.base
    # a trust list generated 30 days ago
    operator = base / "pki/operator.pem"
    dn = x509.load_pem_x509_certificate(operator.read_bytes()).subject.rfc4514_string()
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (base / "trustlist.xml").write_text(render_trust_list([("test-operator.mssante.fr", "t", dn)], old))
    # a server certificate that expires in 3 days
    ca = load_ca(base / "pki")
    short = issue(ca, _name("mx.patient.mssante.fr", "Test"), ("localhost",), server=True, client=False, days=3)
    (base / "pki/server.pem").write_bytes(short.cert.public_bytes(Encoding.PEM))
    write_private(base / "pki/server.key", key_pem(short.key))
    assert relay.daemon.reload()
    code, body = _get(relay, "/healthz")
    health = json.loads(body)
    assert code == 503 and health["status"] == "fail"
    assert not health["checks"]["trust_list"]["ok"] and health["checks"]["trust_list"]["age_days"] > 29
    assert not health["checks"]["certificates"]["ok"] and health["checks"]["certificates"]["days_left"] < 4
    assert health["checks"]["store"]["ok"]

