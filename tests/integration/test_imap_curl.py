"""End to end with a real IMAP client from Debian: curl logs in over TLS (imaps://) and
fetches a message the MX delivered."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.integration.conftest import INS_ACTIVE, PASSWORD, RunningDaemon, message

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl not installed (apt-get install curl)")


def _curl(relay: RunningDaemon, url_path: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL
    return subprocess.run([CURL, "--silent", "--show-error", "--cacert", str(relay.pki("ca.pem")),
                           "--user", f"{INS_ACTIVE}@patient.mssante.fr:{PASSWORD}",
                           f"imaps://localhost:{relay.imap_ports[1]}/{url_path}", *extra],
                          capture_output=True, timeout=60)


def test_curl_fetches_a_delivered_message(relay: RunningDaemon) -> None:
    raw = message(subject="Compte rendu pour curl", body="Bonjour depuis le MX.\r\n")
    relay.deliver(raw)
    p = _curl(relay, "INBOX;UID=1")
    assert p.returncode == 0, p.stderr
    assert p.stdout == relay.inbox(INS_ACTIVE)[0]
    assert b"Compte rendu pour curl" in p.stdout


def test_curl_lists_and_examines(relay: RunningDaemon) -> None:
    p = _curl(relay, "")
    assert p.returncode == 0, p.stderr
    assert b"INBOX" in p.stdout and b"\\Sent" in p.stdout
    p = _curl(relay, "INBOX", "--request", "EXAMINE INBOX")
    assert p.returncode == 0 and b"UIDVALIDITY" in p.stdout


def test_curl_with_a_wrong_password_fails(relay: RunningDaemon) -> None:
    assert CURL
    p = subprocess.run([CURL, "--silent", "--cacert", str(relay.pki("ca.pem")), "--user",
                        f"{INS_ACTIVE}:wrong", f"imaps://localhost:{relay.imap_ports[1]}/INBOX;UID=1"],
                       capture_output=True, timeout=60)
    assert p.returncode == 67  # CURLE_LOGIN_DENIED
