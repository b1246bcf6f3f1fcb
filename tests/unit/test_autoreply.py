"""policy/autoreply.py: when the TEST address may answer (RFC 3834), what a test
request is, and the per-sender reply budget."""
from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.autoreply import (AUTO_SUBMITTED, MAILING_LIST, NULL_SENDER, OWN_ADDRESS, PRECEDENCE, REPORT,
                              RESPONSE_SUPPRESSED, ROLE_SENDER, UNUSABLE_SENDER, auto_reply_refusal,
                              is_test_request, recent, within_budget)

PRO = "dr.martin@hopital-exemple.mssante.fr"
BASE = (f"From: Dr Martin <{PRO}>\r\n"
        "To: reponse.automatique-test@patient.mssante.fr\r\n"
        "Subject: TEST\r\n"
        "Message-ID: <t1@hopital-exemple.mssante.fr>\r\n")


def headers(*extra: str, policy: email.policy.Policy = email.policy.default) -> Message:
    raw = (BASE + "".join(f"{h}\r\n" for h in extra) + "\r\nTEST\r\n").encode()
    return email.message_from_bytes(raw, policy=policy)


def test_ordinary_message_gets_a_reply() -> None:
    assert auto_reply_refusal(PRO, headers()) is None
    assert auto_reply_refusal(f"<{PRO}>", headers()) is None


@pytest.mark.parametrize("sender", ["", "<>", " <> ", "< >"])
def test_null_sender_never_answered(sender: str) -> None:
    # RFC 3834 §2: a response to a null reverse-path goes nowhere useful
    assert auto_reply_refusal(sender, headers()) == NULL_SENDER


def test_null_sender_wins_over_other_reasons() -> None:
    assert auto_reply_refusal("<>", headers("Auto-Submitted: auto-replied")) == NULL_SENDER


@pytest.mark.parametrize("sender", ["nobody", "<@>", "user@", "@host"])
def test_unusable_sender(sender: str) -> None:
    assert auto_reply_refusal(sender, headers()) == UNUSABLE_SENDER


def test_source_route_is_ignored() -> None:
    assert auto_reply_refusal(f"<@relay.example:{PRO}>", headers()) is None


@pytest.mark.parametrize("value", [
    "auto-replied", "auto-generated", "AUTO-REPLIED", "Auto-Generated",
    "auto-notified; owner-email=\"x@example.org\"",  # RFC 5436 extension keyword
    "(sent by a robot) auto-generated", "auto-generated (vacation)",
    "  auto-replied  ", "", "(unclosed comment no", "yes", "no-thanks",
])
def test_auto_submitted_other_than_no_refused(value: str) -> None:
    assert auto_reply_refusal(PRO, headers(f"Auto-Submitted: {value}")) == AUTO_SUBMITTED


@pytest.mark.parametrize("value", [
    "no", "No", "NO", " no ", "no (written by a person)", "(human) no", "(a (nested) comment) no",
    "(escaped \\) paren) no", "no; reason=x", "no\r\n (folded comment)",
])
def test_auto_submitted_no_allowed(value: str) -> None:
    assert auto_reply_refusal(PRO, headers(f"Auto-Submitted: {value}")) is None


def test_any_non_no_auto_submitted_among_several_refused() -> None:
    h = headers("Auto-Submitted: no", "Auto-Submitted: auto-replied")
    assert auto_reply_refusal(PRO, h) == AUTO_SUBMITTED


@pytest.mark.parametrize("field", [
    "List-Id: <patients.example.org>", "List-Post: <mailto:l@example.org>",
    "List-Unsubscribe: <mailto:l-leave@example.org>", "List-Help: <mailto:l-help@example.org>",
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click", "LIST-ID: <x.example.org>",
    "list-archive: <https://example.org/>",
])
def test_list_headers_refused(field: str) -> None:
    assert auto_reply_refusal(PRO, headers(field)) == MAILING_LIST


@pytest.mark.parametrize("value", ["bulk", "list", "junk", "BULK", "List", " junk ", "bulk (newsletter)"])
def test_bulk_precedence_refused(value: str) -> None:
    assert auto_reply_refusal(PRO, headers(f"Precedence: {value}")) == PRECEDENCE


@pytest.mark.parametrize("value", ["normal", "first-class", "urgent"])
def test_other_precedence_allowed(value: str) -> None:
    assert auto_reply_refusal(PRO, headers(f"Precedence: {value}")) is None


@pytest.mark.parametrize("local", [
    "mailer-daemon", "MAILER-DAEMON", "Mailer-Daemon", "postmaster", "POSTMASTER", "owner-patients",
    "Owner-List", "patients-request", "PATIENTS-REQUEST", "listserv", "majordomo", "noreply",
    "no-reply", "NoReply", "No-Reply", "noreply+bounce-1234", "donotreply", "\"no-reply\"",
])
def test_role_senders_refused(local: str) -> None:
    assert auto_reply_refusal(f"{local}@hopital-exemple.mssante.fr", headers()) == ROLE_SENDER


@pytest.mark.parametrize("local", ["owner", "requestor", "jean.request", "reply", "postmaster2", "dr.noreply.martin"])
def test_ordinary_local_parts_allowed(local: str) -> None:
    assert auto_reply_refusal(f"{local}@hopital-exemple.mssante.fr", headers()) is None


@pytest.mark.parametrize("value", ["All", "all", "AutoReply", "OOF", "DR, NDR, AutoReply", "RN,oof", "DR, All (x)"])
def test_x_auto_response_suppress_refused(value: str) -> None:
    assert auto_reply_refusal(PRO, headers(f"X-Auto-Response-Suppress: {value}")) == RESPONSE_SUPPRESSED


@pytest.mark.parametrize("value", ["None", "DR", "NDR, RN, NRN"])
def test_x_auto_response_suppress_of_reports_only_allowed(value: str) -> None:
    assert auto_reply_refusal(PRO, headers(f"X-Auto-Response-Suppress: {value}")) is None


@pytest.mark.parametrize("sender", [
    "reponse.automatique-test@patient.mssante.fr", "<Reponse.Automatique-Test@PATIENT.MSSANTE.FR>",
    "reponse.automatique-test@patient.mssante.fr.",
])
def test_own_test_address_as_sender_is_a_loop(sender: str) -> None:
    assert auto_reply_refusal(sender, headers()) == OWN_ADDRESS


def test_own_test_address_in_from_is_a_loop() -> None:
    raw = BASE.replace(f"Dr Martin <{PRO}>", "<REPONSE.automatique-test@patient.mssante.fr>")
    h = email.message_from_string(raw + "\r\nTEST\r\n", policy=email.policy.default)
    assert auto_reply_refusal(PRO, h) == OWN_ADDRESS


def test_own_address_follows_the_configured_domain() -> None:
    sender = "reponse.automatique-test@patient.test.invalid"
    assert auto_reply_refusal(sender, headers()) is None
    assert auto_reply_refusal(sender, headers(), domain="Patient.Test.Invalid") == OWN_ADDRESS


def test_report_with_a_sender_refused() -> None:
    h = headers("MIME-Version: 1.0", "Content-Type: multipart/report; report-type=delivery-status; boundary=x")
    assert auto_reply_refusal(PRO, h) == REPORT


@pytest.mark.parametrize("policy", [email.policy.default, email.policy.compat32, email.policy.SMTP])
def test_any_parsing_policy(policy: email.policy.Policy) -> None:
    assert auto_reply_refusal(PRO, headers(policy=policy)) is None
    assert auto_reply_refusal(PRO, headers("Auto-Submitted: (x) Auto-Replied", policy=policy)) == AUTO_SUBMITTED
    assert auto_reply_refusal(PRO, headers("List-Id: <l.example.org>", policy=policy)) == MAILING_LIST


def test_constructed_message() -> None:
    m = EmailMessage()
    m["From"] = PRO
    assert auto_reply_refusal(PRO, m) is None
    m["Auto-Submitted"] = "auto-generated"
    assert auto_reply_refusal(PRO, m) == AUTO_SUBMITTED


def test_eight_bit_header_does_not_raise() -> None:
    raw = BASE.encode() + b"Auto-Submitted: \xff\xfe\r\nPrecedence: \xe9\r\n\r\nTEST\r\n"
    for policy in (email.policy.default, email.policy.compat32):
        assert auto_reply_refusal(PRO, email.message_from_bytes(raw, policy=policy)) == AUTO_SUBMITTED


@settings(max_examples=300, deadline=None)
@given(sender=st.text(max_size=80), name=st.sampled_from(
    ["Auto-Submitted", "Precedence", "X-Auto-Response-Suppress", "From", "Content-Type", "X-Other"]),
    value=st.text(max_size=120))
def test_never_raises(sender: str, name: str, value: str) -> None:
    m = Message()
    m[name] = value
    assert auto_reply_refusal(sender, m) in {None, NULL_SENDER, UNUSABLE_SENDER, OWN_ADDRESS, AUTO_SUBMITTED,
                                              RESPONSE_SUPPRESSED, MAILING_LIST, PRECEDENCE, ROLE_SENDER, REPORT}


# --- test requests -------------------------------------------------------------------

@pytest.mark.parametrize("subject, body, expected", [
    ("TEST", "TEST", True),
    ("[TEST] connexion", "Ceci est un TEST de messagerie.", True),
    ("TEST", "Bonjour", False),
    ("Bonjour", "TEST", False),
    ("test", "test", False),  # case-sensitive: the ANS documentation asks for "TEST"
    ("Test", "TEST", False),
    ("TEST", "Test", False),
    ("", "", False),
    ("ATTESTATION", "ATTESTATION", True),  # "contains", as DESIGN.md says
])
def test_is_test_request(subject: str, body: str, expected: bool) -> None:
    assert is_test_request(subject, body) is expected


# --- reply budget --------------------------------------------------------------------

NOW = 1_800_000_000.0


def test_budget_empty_history() -> None:
    assert within_budget([], NOW, 3, 3600)


def test_budget_counts_up_to_the_limit() -> None:
    assert within_budget([NOW - 10, NOW - 20], NOW, 3, 3600)
    assert not within_budget([NOW - 10, NOW - 20, NOW - 30], NOW, 3, 3600)


def test_budget_window_is_half_open() -> None:
    # a reply sent exactly window_seconds ago has left the window
    assert within_budget([NOW - 3600, NOW - 1, NOW - 2], NOW, 3, 3600)
    assert not within_budget([NOW - 3599.999, NOW - 1, NOW - 2], NOW, 3, 3600)
    assert not within_budget([NOW, NOW, NOW], NOW, 3, 3600)


def test_budget_ignores_old_replies() -> None:
    assert within_budget([NOW - 7200] * 100, NOW, 1, 3600)


def test_budget_counts_future_times() -> None:
    # the clock stepped back: those replies still count
    assert not within_budget([NOW + 50], NOW, 1, 3600)


@pytest.mark.parametrize("limit", [0, -1])
def test_budget_zero_or_negative_limit_never_allows(limit: int) -> None:
    assert not within_budget([], NOW, limit, 3600)


def test_recent_keeps_the_window() -> None:
    assert recent([NOW - 4000, NOW - 3600, NOW - 3599, NOW, NOW + 1], NOW, 3600) == [NOW - 3599, NOW, NOW + 1]
