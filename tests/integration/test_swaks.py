"""swaks (Debian package, installed by .ci/run) as the professional's client."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.integration.conftest import INS_ACTIVE, INS_UNKNOWN, RunningDaemon

SWAKS = shutil.which("swaks")
pytestmark = pytest.mark.skipif(SWAKS is None and not os.environ.get("CI"),
                                reason="swaks not installed (apt-get install swaks)")


def swaks(relay: RunningDaemon, to: str, cert: str = "operator") -> subprocess.CompletedProcess[str]:
    assert SWAKS, "swaks must be installed in CI"
    return subprocess.run(
        [SWAKS, "--to", to, "--from", "dr.martin@test-operator.mssante.fr",
         "--helo", "mail.test-operator.mssante.fr", "--server", f"127.0.0.1:{relay.port}",
         "--tls", "--tls-verify", "--tls-ca-path", str(relay.pki("ca.pem")),
         "--tls-cert", str(relay.pki(f"{cert}.pem")), "--tls-key", str(relay.pki(f"{cert}.key")),
         "--header", "Subject: Compte rendu de consultation", "--body", "Bonjour, voici le compte rendu."],
        capture_output=True, text=True, timeout=60)


def test_swaks_delivers(relay: RunningDaemon) -> None:
    p = swaks(relay, f"{INS_ACTIVE}@patient.mssante.fr")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "<~  250 2.0.0" in p.stdout
    stored = relay.inbox(INS_ACTIVE)
    assert len(stored) == 1 and b"Compte rendu de consultation" in stored[0]


def test_swaks_unknown_recipient(relay: RunningDaemon) -> None:
    p = swaks(relay, f"{INS_UNKNOWN}@patient.mssante.fr")
    assert p.returncode != 0
    assert "* 550 5.1.1" in p.stdout  # swaks marks errors "<~*" inside TLS
    assert relay.inbox(INS_ACTIVE) == []


def test_swaks_other_certificate_dn(relay: RunningDaemon) -> None:
    p = swaks(relay, f"{INS_ACTIVE}@patient.mssante.fr", cert="other")
    assert "* 550 5.7.1" in p.stdout and p.returncode != 0
