"""[cps] of relay.toml (certs/cps.py CardProfile) and the pure parts of the card code:
errors name the field; the PIN block; status words; the DER and FCP lengths."""
from __future__ import annotations

from pathlib import Path

import pytest

from certs import cps
from certs.cps import CardProfile, card_profile, pin_block
from relay.core.config import ConfigError, load_config


def test_template_carries_the_defaults(dev_instance: Path) -> None:
    assert load_config(dev_instance / "relay.toml").cps == CardProfile()


def test_a_tuned_profile_loads(tmp_path: Path, dev_instance: Path) -> None:
    text = (dev_instance / "relay.toml").read_text().replace('sign_mode = "internal_authenticate"',
                                                             'sign_mode = "pso"').replace("algo_ref = 0x02",
                                                                                          "algo_ref = 0x42")
    (tmp_path / "relay.toml").write_text(text)
    p = load_config(tmp_path / "relay.toml").cps
    assert (p.sign_mode, p.algo_ref) == ("pso", 0x42)


@pytest.mark.parametrize(("table", "field"), [
    ({"aid": "E828BD08ZZ"}, "cps.aid"),
    ({"aid": "E828"}, "cps.aid"),
    ({"cert_file": "D00101"}, "cps.cert_file"),
    ({"pin_ref": 256}, "cps.pin_ref"),
    ({"key_ref": "81"}, "cps.key_ref"),
    ({"key_ref": True}, "cps.key_ref"),
    ({"sign_mode": "decipher"}, "cps.sign_mode"),
    ({"pin_min": 6, "pin_max": 4}, "cps.pin_max"),
    ({"pin_pad_to": 4}, "cps.pin_pad_to"),
    ({"pin": "1234"}, "cps.pin"),  # unknown key: a PIN never goes in a file
])
def test_bad_values_name_their_field(table: dict, field: str) -> None:
    with pytest.raises(ValueError) as e:
        card_profile(table)
    assert str(e.value).startswith(f"{field}:")


def test_config_error_names_the_field(tmp_path: Path, dev_instance: Path) -> None:
    text = (dev_instance / "relay.toml").read_text().replace("pin_ref = 0x81", "pin_ref = 300")
    (tmp_path / "relay.toml").write_text(text)
    with pytest.raises(ConfigError, match=r"^cps\.pin_ref: expected an integer from 0 to 255, got 300$"):
        load_config(tmp_path / "relay.toml")


def test_pin_block_pads_with_ff() -> None:
    assert pin_block("1234", CardProfile()) == b"1234\xff\xff\xff\xff"
    assert pin_block("1234", CardProfile(pin_pad_to=0)) == b"1234"


@pytest.mark.parametrize("pin", ["", "123", "123456789", "12 34", "abcd", "١٢٣٤"])
def test_malformed_pins_never_reach_the_card(pin: str) -> None:
    with pytest.raises(cps.BadPinFormat, match="4 a 8 chiffres"):
        pin_block(pin, CardProfile())


@pytest.mark.parametrize(("sw", "kind", "text"), [
    (0x63C2, cps.WrongPin, "2 essais restants"),
    (0x63C1, cps.WrongPin, "1 essai restant"),
    (0x63C0, cps.PinBlocked, "carte bloquee"),
    (0x6983, cps.PinBlocked, "carte bloquee"),
    (0x6A88, cps.CardRefused, "verifiez [cps]"),
    (0x6F00, cps.CardRefused, "SW 6F00"),
])
def test_pin_status_words(sw: int, kind: type, text: str) -> None:
    with pytest.raises(kind) as e:
        cps._check_pin_status(sw)
    assert text in e.value.message and e.value.message.isascii() and " / " in e.value.message


def test_lengths_from_der_and_fcp() -> None:
    assert cps._der_length(bytes([0x30, 0x82, 0x03, 0x7A])) == 4 + 0x37A
    assert cps._der_length(bytes([0x30, 0x10])) == 0x12
    assert cps._der_length(b"\x04\x01") is None
    assert cps._fcp_size(bytes([0x62, 0x08, 0x80, 0x02, 0x03, 0x7E, 0x82, 0x01, 0x01, 0x00])) == 0x37E
    assert cps._fcp_size(b"") is None


def test_le_replaced_or_added() -> None:
    assert cps._with_le([0, 0xB0, 0, 0, 0xE7], 0x10) == [0, 0xB0, 0, 0, 0x10]
    assert cps._with_le([0, 0x88, 0, 0, 2, 1, 2], 0) == [0, 0x88, 0, 0, 2, 1, 2, 0]
    assert cps._with_le([0, 0x88, 0, 0, 2, 1, 2, 0], 0x80) == [0, 0x88, 0, 0, 2, 1, 2, 0x80]


def test_client_defaults_come_from_the_instance(dev_instance: Path) -> None:
    import argparse

    from relay.pro.client import settings_for
    config = load_config(dev_instance / "relay.toml")
    none = argparse.Namespace(server=None, ca=None)
    s = settings_for(none, config)
    assert s.server == "https://127.0.0.1:8443" and s.ca_file == config.trust_anchors and s.profile == config.cps
    given = settings_for(argparse.Namespace(server="https://relay.example:9443", ca="/etc/ca.pem"), config)
    assert (given.server, given.ca_file) == ("https://relay.example:9443", Path("/etc/ca.pem"))
    bare = settings_for(none, None)
    assert (bare.server, bare.ca_file, bare.profile) == ("https://127.0.0.1:8443", None, CardProfile())


def test_refusal_codes_all_have_a_french_line() -> None:
    from relay.pro.client import API_ERRORS
    assert set(API_ERRORS) == {"bad_signature", "unknown_nonce", "untrusted_certificate", "expired_certificate",
                               "revoked_certificate", "not_a_professional", "unauthenticated", "blocked",
                               "not_authorised", "unknown_patient", "unknown_document", "reason_required",
                               "emergency_disabled"}
    assert all(t.isascii() and " / " in t for t in API_ERRORS.values())
