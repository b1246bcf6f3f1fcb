"""Fixtures for the CPS card tests: one private pcscd with vpcd per session, the virtual card
inserted fresh (3 PIN tries) for each test that asks for it."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs.pki import make_ca
from tests.cps.cards import CardFiles, issue_cps_cert
from tests.cps.stack import PcscStack

PIN = "1234"


@pytest.fixture(scope="session")
def pcsc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscStack]:
    stack = PcscStack(tmp_path_factory.mktemp("pcsc")).start()
    # libpcsclite reads the socket name once per process: set before any PC/SC call here
    previous = os.environ.get("PCSCLITE_CSOCK_NAME")
    os.environ["PCSCLITE_CSOCK_NAME"] = str(stack.socket)
    yield stack
    stack.stop()
    if previous is None:
        os.environ.pop("PCSCLITE_CSOCK_NAME", None)
    else:
        os.environ["PCSCLITE_CSOCK_NAME"] = previous


@pytest.fixture(scope="session")
def no_reader_pcsc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscStack]:
    stack = PcscStack(tmp_path_factory.mktemp("pcsc-empty"), with_reader=False).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def card_files(tmp_path_factory: pytest.TempPathFactory) -> CardFiles:
    ca = make_ca("AC IGC-Sante TEST Personnes", "ASIP-SANTE TEST")
    return issue_cps_cert(ca, tmp_path_factory.mktemp("card"))


@pytest.fixture
def card(pcsc: PcscStack, card_files: CardFiles) -> Iterator[CardFiles]:
    """A fresh card in 'Virtual PCD 00 00' (PIN 1234, 3 tries); removed afterwards."""
    pcsc.insert(card_files.key, card_files.cert, PIN)
    yield card_files
    pcsc.remove()


@pytest.fixture
def cli_env(pcsc: PcscStack) -> dict[str, str]:
    env = {**pcsc.env(), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("MSSANTE_RELAY_CONFIG", None)
    return env
