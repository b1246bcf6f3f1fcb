"""certs/cps.py against a real PC/SC stack: Debian's pcscd, vsmartcard's vpcd reader, and the
virtual CPS card (tests/cps/virtual_cps.py) answering ISO 7816-4 / IAS-ECC APDUs."""
from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from certs import cps
from certs.cps import CardProfile
from tests.cps.cards import IDNAT, CardFiles
from tests.cps.conftest import PIN
from tests.cps.stack import PcscStack


def tries_left(profile: CardProfile = CardProfile()) -> int | None:
    c = cps.open_card(None, profile)
    try:
        with c.transaction():
            return c.pin_tries_left()
    finally:
        c.close()


def test_lists_the_virtual_readers(pcsc: PcscStack) -> None:
    assert "Virtual PCD 00 00" in cps.list_readers()


def test_no_card_in_any_reader(pcsc: PcscStack) -> None:
    with pytest.raises(cps.NoCard) as e:
        cps.open_card(None)
    assert "pas de carte" in e.value.message and "no card" in e.value.message


def test_unknown_reader_is_named(card: CardFiles) -> None:
    with pytest.raises(cps.UnknownReader) as e:
        cps.open_card("Lecteur Omnikey")
    assert "Lecteur Omnikey" in e.value.message and "Virtual PCD 00 00" in e.value.message


def test_reads_the_authentication_certificate(card: CardFiles) -> None:
    c = cps.open_card("Virtual PCD 00 00")
    try:
        with c.transaction():
            der = c.read_certificate()
    finally:
        c.close()
    cert = x509.load_der_x509_certificate(der)
    assert der == card.issued.cert.public_bytes(serialization.Encoding.DER)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == IDNAT


@pytest.mark.parametrize("profile", [CardProfile(), replace(CardProfile(), sign_mode="pso", algo_ref=0x42)],
                         ids=["internal_authenticate", "pso"])
def test_card_signs_what_the_certificate_verifies(card: CardFiles, profile: CardProfile) -> None:
    nonce = b"q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c"
    c = cps.open_card(None, profile)
    try:
        with c.transaction():
            der = c.read_certificate()
            c.verify_pin(PIN)
            sig = c.sign_sha256(nonce)
    finally:
        c.close()
    key = x509.load_der_x509_certificate(der).public_key()
    key.verify(sig, nonce, padding.PKCS1v15(), hashes.SHA256())  # RSASSA-PKCS1-v1_5 / SHA-256
    with pytest.raises(InvalidSignature):
        key.verify(sig, nonce + b"x", padding.PKCS1v15(), hashes.SHA256())


def test_signing_without_the_pin_is_refused(card: CardFiles) -> None:
    c = cps.open_card(None)
    try:
        with c.transaction():
            with pytest.raises(cps.CardRefused) as e:
                c.sign_sha256(b"nonce")
    finally:
        c.close()
    assert e.value.sw == 0x6982 and "PIN non verifie" in e.value.message


def test_wrong_pin_decrements_the_counter(card: CardFiles) -> None:
    assert tries_left() == 3
    c = cps.open_card(None)
    try:
        with c.transaction():
            with pytest.raises(cps.WrongPin) as e:
                c.verify_pin("0000")
    finally:
        c.close()
    assert e.value.tries_left == 2
    assert e.value.message == "code PIN incorrect, 2 essais restants / wrong PIN, 2 tries left"
    assert tries_left() == 2  # the card keeps it across connections


def test_right_pin_restores_the_counter(card: CardFiles) -> None:
    c = cps.open_card(None)
    try:
        with c.transaction():
            with pytest.raises(cps.WrongPin):
                c.verify_pin("9999")
            c.verify_pin(PIN)
    finally:
        c.close()
    assert tries_left() == 3


def test_three_wrong_pins_block_the_card(card: CardFiles) -> None:
    seen = []
    for _ in range(2):
        c = cps.open_card(None)
        try:
            with c.transaction(), pytest.raises(cps.WrongPin) as e:
                c.verify_pin("0000")
            seen.append(e.value.tries_left)
        finally:
            c.close()
    c = cps.open_card(None)
    try:
        with c.transaction():
            with pytest.raises(cps.PinBlocked):
                c.verify_pin("0000")
            with pytest.raises(cps.PinBlocked):  # even the right PIN is refused now
                c.verify_pin(PIN)
            with pytest.raises(cps.PinBlocked):
                c.pin_tries_left()
    finally:
        c.close()
    assert seen == [2, 1]


def test_malformed_pin_costs_no_try(card: CardFiles) -> None:
    c = cps.open_card(None)
    try:
        with c.transaction():
            for bad in ("12", "12a4", "123456789", "１２３４"):
                with pytest.raises(cps.BadPinFormat):
                    c.verify_pin(bad)
    finally:
        c.close()
    assert tries_left() == 3


def test_wrong_file_identifier_names_the_config(card: CardFiles) -> None:
    c = cps.open_card(None, replace(CardProfile(), cert_file=bytes.fromhex("D0FF")))
    try:
        with c.transaction(), pytest.raises(cps.CardRefused) as e:
            c.read_certificate()
    finally:
        c.close()
    assert e.value.sw == 0x6A82 and "[cps]" in e.value.message
