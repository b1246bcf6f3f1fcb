"""`mssante-relay pro dossier` as a real process with a real terminal, reading the virtual
card through pcscd: one French line and a non-zero exit for every failure, no traceback.

The server side here is tests/cps/api_standin.py (the API contract, checking the card's
signature); against the daemon itself: tests/integration/test_pro_dossier_e2e.py."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from certs import cps
from tests.cps.api_standin import DOC, INS, StandIn
from tests.cps.cards import IDNAT, CardFiles
from tests.cps.conftest import PIN
from tests.cps.stack import PcscStack
from tests.cps.terminal import Run, run_cli


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StandIn]:
    with StandIn(tmp_path / "server") as s:
        yield s


def dossier(env: dict[str, str], server: StandIn | None, *extra: str, pin: str | None = PIN) -> Run:
    where = ["--server", server.url, "--ca", str(server.ca_file)] if server else ["--server", "https://127.0.0.1:9"]
    return run_cli(["pro", "dossier", INS, *where, *extra], env, pin=pin)


def one_line(run: Run) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 1, run
    assert "Traceback" not in run.stderr + run.stdout + run.terminal
    assert len(lines) == 1 or (len(lines) == 2 and lines[0].startswith("Connecte")), run.stderr
    assert lines[-1].startswith("mssante-relay: ")
    assert lines[-1].isascii()
    return lines[-1]


def test_lists_the_dossier_after_card_login(card: CardFiles, cli_env: dict[str, str], server: StandIn) -> None:
    run = dossier(cli_env, server)
    assert run.returncode == 0, run
    assert "Code PIN de la carte CPS" in run.terminal and PIN not in run.terminal  # no echo
    assert f"Connecte : Jeanne Medecin ({IDNAT})" in run.stderr
    assert "d1  2026-11-23  application/pdf" in run.stdout and "Compte rendu" in run.stdout
    assert server.verified_signatures == 1  # the stand-in checked the card's signature of its nonce


def test_downloads_one_document(card: CardFiles, cli_env: dict[str, str], server: StandIn, tmp_path: Path) -> None:
    out = tmp_path / "cr.pdf"
    run = dossier(cli_env, server, "--get", "d1", "--output", str(out))
    assert run.returncode == 0, run
    assert out.read_bytes() == DOC and (out.stat().st_mode & 0o777) == 0o600
    again = dossier(cli_env, server, "--get", "d1", "--output", str(out))
    assert "existe deja" in one_line(again) and out.read_bytes() == DOC


def test_consent_and_emergency_follow_the_contract(card: CardFiles, cli_env: dict[str, str],
                                                   server: StandIn) -> None:
    run = dossier(cli_env, server, "--consent", "--emergency", "patient inconscient aux urgences")
    assert run.returncode == 0, run
    posted = [(p, b) for m, p, b in server.requests if m == "POST" and p.startswith("/pro/patients/")]
    assert posted == [(f"/pro/patients/{INS}/access", {"consent": True}),
                      (f"/pro/patients/{INS}/emergency", {"reason": "patient inconscient aux urgences"})]


@pytest.mark.parametrize(("route", "status", "code", "french"), [
    ("session", 401, "untrusted_certificate", "certificat de la carte non reconnu"),
    ("session", 401, "revoked_certificate", "certificat de la carte revoque"),
    ("session", 401, "not_a_professional", "IdNat_PS"),
    ("documents", 403, "blocked", "le patient vous a bloque"),
    ("documents", 403, "not_authorised", "le patient ne vous a pas autorise"),
    ("documents", 404, "unknown_patient", "patient inconnu"),
    ("emergency", 403, "emergency_disabled", "desactive l'acces en cas d'urgence"),
])
def test_server_refusals_in_french(card: CardFiles, cli_env: dict[str, str], server: StandIn,
                                   route: str, status: int, code: str, french: str) -> None:
    server.refuse[route] = (status, code)
    extra = ("--emergency", "urgence vitale") if route == "emergency" else ()
    line = one_line(dossier(cli_env, server, *extra))
    assert french in line and f"HTTP {status} {code}" in line


def test_unknown_document_in_french(card: CardFiles, cli_env: dict[str, str], server: StandIn,
                                    tmp_path: Path) -> None:
    line = one_line(dossier(cli_env, server, "--get", "nope", "--output", str(tmp_path / "x")))
    assert "document introuvable" in line and not (tmp_path / "x").exists()


def test_no_pcsc_service(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {**cli_env, "PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm")}
    assert "pcscd" in one_line(dossier(env, None, pin=None))


def test_no_reader(no_reader_pcsc: PcscStack, cli_env: dict[str, str]) -> None:
    env = {**cli_env, **no_reader_pcsc.env()}
    assert "aucun lecteur de carte" in one_line(dossier(env, None, pin=None))


def test_no_card(pcsc: PcscStack, cli_env: dict[str, str]) -> None:
    assert "pas de carte" in one_line(dossier(cli_env, None, pin=None))


def test_unknown_reader(card: CardFiles, cli_env: dict[str, str]) -> None:
    line = one_line(dossier(cli_env, None, "--reader", "Omnikey", pin=None))
    assert "lecteur 'Omnikey' introuvable" in line


def test_wrong_pin_says_tries_left_then_blocked(card: CardFiles, cli_env: dict[str, str],
                                                server: StandIn) -> None:
    assert one_line(dossier(cli_env, server, pin="0000")) == \
        "mssante-relay: code PIN incorrect, 2 essais restants / wrong PIN, 2 tries left"
    second = dossier(cli_env, server, pin="0000")
    assert "(2 essais restants)" in second.terminal  # the prompt warns before the next try
    assert "1 essai restant" in one_line(second)
    assert "carte bloquee" in one_line(dossier(cli_env, server, pin="0000"))
    blocked = dossier(cli_env, server, pin=PIN)
    assert "carte bloquee" in one_line(blocked) and "Code PIN" not in blocked.terminal  # not asked again
    assert server.verified_signatures == 0


def test_pin_is_never_read_from_a_pipe(card: CardFiles, cli_env: dict[str, str], server: StandIn) -> None:
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "relay.cli", "pro", "dossier", INS, "--server", server.url,
                           "--ca", str(server.ca_file)], input=f"{PIN}\n", capture_output=True, text=True,
                          env=cli_env, cwd=Path(__file__).resolve().parents[2], timeout=120,
                          start_new_session=True)  # no controlling terminal
    assert proc.returncode == 1 and proc.stderr.strip() == \
        "mssante-relay: aucun terminal pour saisir le code PIN / no terminal to type the PIN"
    c = cps.open_card(None)
    try:
        with c.transaction():
            assert c.pin_tries_left() == 3
    finally:
        c.close()


def test_server_unreachable(card: CardFiles, cli_env: dict[str, str], tmp_path: Path) -> None:
    line = one_line(run_cli(["pro", "dossier", INS, "--server", "https://127.0.0.1:9"], cli_env, pin=PIN))
    assert "injoignable" in line
