"""policy/recipients.py and policy/addresses.py: RCPT TO checks in the order of DESIGN.md §4
(domain, INS syntax and key, unknown mailbox, opposed or closed mailbox)."""
from __future__ import annotations

import pytest

from policy.addresses import (PATIENT_DOMAIN, Address, AddressKind, Classified, classify,
                              split_address)
from policy.decisions import BAD_INS, MAILBOX_DISABLED, RELAY_DENIED, UNKNOWN_MAILBOX, Decision
from policy.ins import Ins
from policy.recipients import MailboxState, classify_recipient, mailbox_decision, parse_state

GOOD_INS = "279035121518989"
DOMAIN = "patient.mssante.fr"


# --- split_address / classify ----------------------------------------------------------------

def test_split_address() -> None:
    assert split_address("<279035121518989@Patient.MSSante.FR.>") == Address(GOOD_INS, DOMAIN)
    # nothing is stripped: whitespace or control characters make an address invalid
    assert split_address("  a@b.fr") == Address("  a", "b.fr")
    assert classify_recipient("279035121518989\r@patient.mssante.fr", "patient.mssante.fr") is BAD_INS
    assert str(split_address("Jean.Dupont@Example.FR")) == "Jean.Dupont@example.fr"  # local part kept
    # the last @ separates the domain (RFC 5321 §4.1.2: a quoted local part may hold one)
    assert split_address('"a@b"@patient.mssante.fr') == Address('"a@b"', DOMAIN)


@pytest.mark.parametrize("text", ["", "no-at-sign", "@patient.mssante.fr", "279035121518989@", "<>"])
def test_split_address_refuses_non_addresses(text: str) -> None:
    assert split_address(text) is None


def test_classify_kinds() -> None:
    assert classify(Address(GOOD_INS, DOMAIN)) == Classified(AddressKind.PATIENT, Ins(GOOD_INS))
    assert classify(Address(GOOD_INS, "example.fr")).kind is AddressKind.FOREIGN
    assert classify(Address("reponse.automatique-test", DOMAIN)).kind is AddressKind.TEST
    bad = classify(Address("279035121518988", DOMAIN))
    assert bad.kind is AddressKind.BAD_PATIENT
    assert bad.ins is None
    assert "expected 89" in bad.reason  # the INS error is kept for the logs


def test_classify_other_served_domain() -> None:
    # the served domain comes from the configuration, compared case-insensitively
    assert classify(Address(GOOD_INS, "patient.example.test"), "Patient.Example.TEST").kind is \
        AddressKind.PATIENT
    assert classify(Address(GOOD_INS, DOMAIN), "patient.example.test").kind is AddressKind.FOREIGN
    assert PATIENT_DOMAIN == DOMAIN


# --- classify_recipient: order of checks --------------------------------------------------------

def test_foreign_domain_relay_denied_even_with_bad_ins() -> None:
    for addr in (f"{GOOD_INS}@example.fr", "not-an-ins@example.fr", "279035121518988@gmail.com"):
        d = classify_recipient(addr, DOMAIN)
        assert d is RELAY_DENIED
        assert isinstance(d, Decision) and (d.code, d.status) == (550, "5.7.1")
        assert d.rule == "relay_denied"


def test_subdomain_of_ours_is_foreign() -> None:
    assert classify_recipient(f"{GOOD_INS}@x.patient.mssante.fr", DOMAIN) is RELAY_DENIED
    assert classify_recipient(f"{GOOD_INS}@mssante.fr", DOMAIN) is RELAY_DENIED


@pytest.mark.parametrize("local", [
    "279035121518988",   # wrong key
    "27903512151898",    # 14 characters
    "223042545611404",   # ANS example whose key does not verify
    "jean.dupont",       # not an INS at all
    "279135121518989",   # impossible month 13
])
def test_our_domain_bad_ins_501_513(local: str) -> None:
    d = classify_recipient(f"<{local}@{DOMAIN}>", DOMAIN)
    assert d is BAD_INS
    assert isinstance(d, Decision) and (d.code, d.status) == (501, "5.1.3")
    assert d.smtp().startswith("501 5.1.3 ")


def test_unparsable_address_is_bad_ins() -> None:
    d = classify_recipient("no-at-sign", DOMAIN)
    assert isinstance(d, Decision) and (d.code, d.status) == (501, "5.1.3")


@pytest.mark.parametrize("addr", [
    "reponse.automatique-test@patient.mssante.fr",
    "<REPONSE.AUTOMATIQUE-TEST@Patient.MSSante.fr>",
])
def test_test_address_classified_test(addr: str) -> None:
    c = classify_recipient(addr, DOMAIN)
    assert isinstance(c, Classified)
    assert c.kind is AddressKind.TEST
    assert c.ins is None


@pytest.mark.parametrize("addr", [
    f"{GOOD_INS}@PATIENT.MSSANTE.FR",
    f"<{GOOD_INS}@Patient.Mssante.Fr>",
    f"{GOOD_INS}@patient.mssante.fr.",
])
def test_domain_case_insensitive(addr: str) -> None:
    c = classify_recipient(addr, DOMAIN)
    assert isinstance(c, Classified)
    assert c.kind is AddressKind.PATIENT
    assert c.ins == Ins(GOOD_INS)


def test_patient_with_corsica_lower_case_normalised() -> None:
    base = "185052A004123"
    key = 97 - int("18505" + "19" + "004123") % 97
    c = classify_recipient(f"{base.lower()}{key:02d}@{DOMAIN}", DOMAIN)
    assert isinstance(c, Classified) and c.ins == Ins(f"{base}{key:02d}")


# --- mailbox_decision ------------------------------------------------------------------------------

def test_unknown_mailbox_550_511() -> None:
    d = mailbox_decision(None)
    assert d is UNKNOWN_MAILBOX
    assert d is not None and (d.code, d.status) == (550, "5.1.1")


@pytest.mark.parametrize("state", [MailboxState.OPPOSED, MailboxState.CLOSED])
def test_opposed_or_closed_550_521(state: MailboxState) -> None:
    d = mailbox_decision(state)
    assert d is MAILBOX_DISABLED
    assert d is not None and (d.code, d.status) == (550, "5.2.1")
    assert not state.receives


@pytest.mark.parametrize("state", [MailboxState.PENDING, MailboxState.ACTIVE])
def test_pending_and_active_receive(state: MailboxState) -> None:
    assert mailbox_decision(state) is None
    assert state.receives


# --- parse_state ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, state", [
    ("pending", MailboxState.PENDING), ("ACTIVE", MailboxState.ACTIVE),
    (" Opposed ", MailboxState.OPPOSED), ("closed", MailboxState.CLOSED),
])
def test_parse_state(text: str, state: MailboxState) -> None:
    assert parse_state(text) is state


@pytest.mark.parametrize("text", ["deleted", "", "activ"])
def test_parse_state_error_names_allowed_states(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_state(text)
    msg = str(exc.value)
    assert repr(text) in msg
    for allowed in ("pending", "active", "opposed", "closed"):
        assert allowed in msg
