"""Issue 13: the conformance kit against our own daemon (every scenario passes), and
against broken deployments (an aiosmtpd sink that accepts everything; one that
refuses correctly but never answers the TEST address): the right scenarios fail."""
from __future__ import annotations

import io
import json
import ssl
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from aiosmtpd.controller import Controller

from relay.cli import main
from tests.integration.conftest import INS_ACTIVE, INS_OPPOSED, PASSWORD, RunningDaemon

LISTEN = "127.0.0.1:2626"  # delivery.transport of the template instance for test-operator.mssante.fr


def kit(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        stdin: str = "") -> tuple[int, dict]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["conformance", "run", "--json", *args])
    out = capsys.readouterr().out
    out = out[out.index('{\n  "summary"'):]  # the daemon of this process logs on stdout too
    return code, {r["name"]: r for r in json.loads(out)["results"]}


def against_daemon(relay: RunningDaemon) -> list[str]:
    pki = relay.base / "pki"
    return ["--mx", f"127.0.0.1:{relay.port}", "--imap", f"127.0.0.1:{relay.imap_ports[1]}",
            "--submission", f"127.0.0.1:{relay.daemon.submission_ports[0]}",
            "--cert", str(pki / "operator.pem"), "--key", str(pki / "operator.key"), "--ca", str(pki / "ca.pem"),
            "--sender", "dr.kit@test-operator.mssante.fr", "--patient", INS_ACTIVE,
            "--web", f"https://127.0.0.1:{relay.daemon.web.port}"]


def test_every_scenario_passes_against_our_daemon(relay: RunningDaemon, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    junit = tmp_path / "kit.xml"
    code, results = kit([*against_daemon(relay), "--patient-password-stdin", "--listen", LISTEN,
                         "--second-sender", "dr.durand@test-operator.mssante.fr", "--closed-patient", INS_OPPOSED,
                         "--wait", "90", "--quiet-wait", "5", "--junit", str(junit)],
                        capsys, monkeypatch, PASSWORD + "\n")
    bad = {n: (r["status"], r["reason"], r["exchange"]) for n, r in results.items() if r["status"] != "PASS"}
    assert bad == {}
    assert code == 0 and len(results) >= 24
    suites = ET.parse(junit).getroot()
    cases = suites.findall("testsuite/testcase")
    assert len(cases) == len(results)
    assert all(c.find("failure") is None and c.find("skipped") is None for c in cases)
    assert all(c.find("system-out").text for c in cases)  # the exchange is there


def test_without_listen_or_password_the_scenarios_that_need_them_are_skipped(
        relay: RunningDaemon, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, results = kit(against_daemon(relay), capsys, monkeypatch)
    assert {n: r["reason"] for n, r in results.items() if r["status"] == "FAIL"} == {}
    assert code == 0
    assert results["test_address.ack"]["status"] == "SKIP" and "--listen" in results["test_address.ack"]["reason"]
    assert results["conversation.fin"]["status"] == "SKIP"
    assert "password" in results["conversation.fin"]["reason"]
    assert results["refusal.closed_mailbox"]["status"] == "SKIP"
    assert results["conversation.second_sender"]["status"] == "SKIP"
    assert results["refusal.unknown_ins"]["status"] == "PASS"


class _Sink:
    """An MX that accepts everything (or, `refusing`, refuses like ours but never
    answers the TEST address)."""

    def __init__(self, refusing: bool):
        self.refusing = refusing

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refusing:
            local, _, domain = address.partition("@")
            if domain.lower() != "patient.mssante.fr":
                return "550 5.7.1 Relais refuse / Relay access denied"
            if local.startswith("7"):
                return "550 5.1.1 Boite aux lettres patient inconnue / Unknown patient mailbox"
            if local != "reponse.automatique-test" and local != INS_ACTIVE:
                return "501 5.1.3 Adresse patient invalide / Bad patient address"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 OK"


@pytest.fixture
def sink(instance: Path) -> tuple[Controller, Path]:
    pki = instance / "pki"
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    return ctx, pki


def _run_against_sink(refusing: bool, sink: tuple, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict]:
    ctx, pki = sink
    controller = Controller(_Sink(refusing), hostname="127.0.0.1", port=2525, tls_context=ctx,
                            data_size_limit=26214400)
    controller.start()
    try:
        return kit(["--mx", "127.0.0.1:2525", "--cert", str(pki / "operator.pem"), "--key", str(pki / "operator.key"),
                    "--ca", str(pki / "ca.pem"), "--sender", "dr.kit@test-operator.mssante.fr",
                    "--patient", INS_ACTIVE, "--listen", LISTEN, "--wait", "5", "--quiet-wait", "2",
                    "--only", "test_address.*", "--only", "refusal.*"], capsys, monkeypatch)
    finally:
        controller.stop()


def test_a_sink_that_accepts_everything_fails_every_refusal(sink: tuple, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    code, results = _run_against_sink(False, sink, capsys, monkeypatch)
    assert code == 1
    for name in ("refusal.unknown_ins", "refusal.bad_ins_key", "refusal.relay", "refusal.no_starttls",
                 "refusal.no_client_cert", "refusal.untrusted_cert", "refusal.sender_not_listed",
                 "refusal.forbidden_attachment", "refusal.bare_lf"):
        assert results[name]["status"] == "FAIL", (name, results[name])
    assert "expected 550 5.1.1, got 250" in results["refusal.unknown_ins"]["reason"]
    assert "expected 530 5.7.0" in results["refusal.no_starttls"]["reason"]
    assert "self-signed client certificate was accepted" in results["refusal.untrusted_cert"]["reason"]
    assert results["test_address.ack"]["status"] == "FAIL"
    assert "no acknowledgement" in results["test_address.ack"]["reason"]
    # aiosmtpd's own SIZE refusal has no enhanced status code (RFC 2034): not ours
    assert results["refusal.oversize"]["status"] == "FAIL"
    assert "expected 552 5.3.4" in results["refusal.oversize"]["reason"]
    # it answers nothing, so the "no answer" scenarios rightly pass; no closed mailbox given: skipped, not passed
    assert results["test_address.no_keyword"]["status"] == "PASS"
    assert results["refusal.closed_mailbox"]["status"] == "SKIP"


def test_a_sink_that_refuses_correctly_but_never_answers_test(sink: tuple, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, results = _run_against_sink(True, sink, capsys, monkeypatch)
    assert code == 1
    for name in ("refusal.unknown_ins", "refusal.bad_ins_key", "refusal.relay"):
        assert results[name]["status"] == "PASS", (name, results[name])
    assert results["test_address.ack"]["status"] == "FAIL"
    assert "no acknowledgement reached" in results["test_address.ack"]["reason"]
    assert any(line.startswith("S: 250") for line in results["test_address.ack"]["exchange"])
