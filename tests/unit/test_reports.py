"""relay/delivery/reports.py: the DSN, MDN, TEST acknowledgement and notification we
send ourselves, parsed back and checked field by field and on the wire."""
from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage, Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.delivery.reports import (FailedRecipient, build_dsn, build_mdn, build_notification, build_test_reply,
                                    original_headers_of)
from tests.examples import examples

HOST = "mx.patient.mssante.fr"
POSTMASTER = "postmaster@patient.mssante.fr"
PRO = "dr.martin@hopital-exemple.mssante.fr"
PATIENT = "279035121518989@patient.mssante.fr"
TEST_ADDR = "reponse.automatique-test@patient.mssante.fr"
NOW = datetime(2026, 11, 23, 18, 36, 30, tzinfo=timezone.utc)
ORIGINAL = (f"Return-Path: <{PRO}>\r\n"
            f"From: Dr Martin <{PRO}>\r\n"
            f"To: {PATIENT}\r\n"
            "Subject: =?utf-8?q?R=C3=A9sultats_d=27analyse?=\r\n"
            "Message-ID: <m1@hopital-exemple.mssante.fr>\r\n"
            "\r\n"
            "Glycemie a jeun: 1,32 g/L\r\n"
            "Cordialement\r\n").encode()


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def assert_wire_safe(raw: bytes) -> None:
    """CRLF only, 7bit, every line within 998 octets (RFC 5322 §2.1.1, §2.3)."""
    assert raw.isascii()
    assert b"\0" not in raw
    assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and not line[0].isspace()]


def text_of(part: Message) -> str:
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


def blocks_of(part: Message) -> list[Message]:
    payload = part.get_payload()
    assert isinstance(payload, list)
    return [block for block in payload if isinstance(block, Message)]


def rcpt(**kw: object) -> FailedRecipient:
    args: dict[str, object] = dict(address=PATIENT, status="5.1.1",
                                   diagnostic="550 5.1.1 Boite aux lettres patient inconnue / Unknown patient mailbox",
                                   remote_mta="mx.hopital-exemple.mssante.fr", last_attempt=NOW)
    args.update(kw)
    return FailedRecipient(**args)  # type: ignore[arg-type]


def dsn(**kw: object) -> bytes:
    args: dict[str, object] = dict(reporting_mta=HOST, postmaster=POSTMASTER, to=PRO, original_envelope_id="QQ314159",
                                   arrival_date=NOW - timedelta(minutes=5), recipients=[rcpt()],
                                   original_headers=original_headers_of(ORIGINAL), now=NOW)
    args.update(kw)
    return build_dsn(**args)  # type: ignore[arg-type]


def mdn(**kw: object) -> bytes:
    args: dict[str, object] = dict(reporting_ua="webmail.patient.mssante.fr; mssante-relay", from_addr=PATIENT,
                                   to=PRO, original_message_id="<m1@hopital-exemple.mssante.fr>",
                                   original_recipient=None, final_recipient=PATIENT,
                                   original_subject="Résultats d'analyse", now=NOW)
    args.update(kw)
    return build_mdn(**args)  # type: ignore[arg-type]


def ack(**kw: object) -> bytes:
    args: dict[str, object] = dict(from_addr=TEST_ADDR, to=PRO, original_message_id="<t1@hopital-exemple.mssante.fr>",
                                   original_subject="TEST messagerie", hostname=HOST, now=NOW)
    args.update(kw)
    return build_test_reply(**args)  # type: ignore[arg-type]



def notification(**kw: object) -> bytes:
    args: dict[str, object] = dict(from_addr="ne-pas-repondre@patient.mssante.fr", to="jean.dupont@example.org",
                                   kind="message", count=1, webmail_url="https://webmail.patient.mssante.fr/",
                                   hostname=HOST, now=NOW)
    args.update(kw)
    return build_notification(**args)  # type: ignore[arg-type]


# --- common envelope ----------------------------------------------------------------

@pytest.mark.parametrize("build, auto", [
    (dsn, "auto-replied"), (mdn, "auto-replied"), (ack, "auto-replied"), (notification, "auto-generated"),
])
def test_every_message_has_the_envelope_headers(build: object, auto: str) -> None:
    raw = build()  # type: ignore[operator]
    assert_wire_safe(raw)
    msg = parse(raw)
    assert msg["Date"].datetime == NOW
    assert re.fullmatch(r"<[^<>@\s]+@(mx|webmail)\.patient\.mssante\.fr>", msg["Message-ID"])
    # on one line: a folded Message-ID is read back by CPython with a leading space
    assert re.search(rb"\r\nMessage-ID: <[0-9a-f]{24}@[a-z.]+>\r\n", raw)
    assert msg["MIME-Version"] == "1.0"
    assert msg["Auto-Submitted"] == auto  # RFC 3834 §5
    assert msg["X-Auto-Response-Suppress"] == "All"
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"):
        assert header_names(raw).count(name) == 1, name
    assert not msg.defects


def test_message_ids_are_unique() -> None:
    assert parse(ack())["Message-ID"] != parse(ack())["Message-ID"]


def test_given_message_id_is_used() -> None:
    assert parse(ack(message_id="<q42@mx.patient.mssante.fr>"))["Message-ID"] == "<q42@mx.patient.mssante.fr>"


def test_naive_datetime_taken_as_utc() -> None:
    assert parse(ack(now=NOW.replace(tzinfo=None)))["Date"].datetime == NOW


def test_other_timezones_converted_to_utc() -> None:
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert "+0000" in parse(ack(now=paris))["Date"]


@pytest.mark.parametrize("bad", [f"{PRO}\r\nBcc: evil@example.org", "nobody", ""])
def test_bad_mailbox_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        ack(to=bad)
    with pytest.raises(ValueError):
        dsn(to=bad)


@pytest.mark.parametrize("bad", ["mx patient", "mx.patient.mssante.fr\r\nX: y", "", "-mx.example"])
def test_bad_hostname_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        ack(hostname=bad)
    with pytest.raises(ValueError):
        dsn(reporting_mta=bad)


# --- DSN ----------------------------------------------------------------------------

def test_dsn_structure() -> None:
    raw = dsn()
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert msg["From"] == POSTMASTER
    assert msg["To"] == PRO
    assert msg["Subject"] == "Message non distribué / Undelivered Mail Returned to Sender"
    assert "In-Reply-To" not in msg


def test_dsn_fields() -> None:
    status = list(parse(dsn(recipients=[rcpt(original_recipient=f"rfc822;{PATIENT}")])).iter_parts())[1]
    per_message, per_rcpt = blocks_of(status)
    assert list(per_message.items()) == [
        ("Original-Envelope-Id", "QQ314159"),
        ("Reporting-MTA", f"dns; {HOST}"),
        ("Arrival-Date", "Mon, 23 Nov 2026 18:31:30 +0000"),
    ]
    assert list(per_rcpt.items()) == [
        ("Original-Recipient", f"rfc822; {PATIENT}"),
        ("Final-Recipient", f"rfc822; {PATIENT}"),
        ("Action", "failed"),
        ("Status", "5.1.1"),
        ("Remote-MTA", "dns; mx.hopital-exemple.mssante.fr"),
        ("Diagnostic-Code", "smtp; 550 5.1.1 Boite aux lettres patient inconnue / Unknown patient mailbox"),
        ("Last-Attempt-Date", "Mon, 23 Nov 2026 18:36:30 +0000"),
    ]


def test_dsn_optional_fields_left_out() -> None:
    r = FailedRecipient(PATIENT, "5.1.1", "")
    status = list(parse(dsn(original_envelope_id=None, recipients=[r])).iter_parts())[1]
    per_message, per_rcpt = blocks_of(status)
    assert list(per_message.keys()) == ["Reporting-MTA", "Arrival-Date"]
    assert list(per_rcpt.keys()) == ["Final-Recipient", "Action", "Status"]


def test_dsn_several_recipients() -> None:
    other = rcpt(address="179035121518923@patient.mssante.fr", status="5.2.1",
                 diagnostic="550 5.2.1 Boite aux lettres patient fermee ou opposee")
    msg = parse(dsn(recipients=[rcpt(), other]))
    blocks = blocks_of(list(msg.iter_parts())[1])
    assert [b["Status"] for b in blocks[1:]] == ["5.1.1", "5.2.1"]
    human = text_of(list(msg.iter_parts())[0])
    assert "179035121518923@patient.mssante.fr" in human and "(5.2.1)" in human


def test_dsn_bare_original_recipient_gets_a_type() -> None:
    blocks = blocks_of(list(parse(dsn(recipients=[rcpt(original_recipient=f"<{PATIENT}>")])).iter_parts())[1])
    assert blocks[1]["Original-Recipient"] == f"rfc822; {PATIENT}"


def test_dsn_non_smtp_diagnostic_type() -> None:
    blocks = blocks_of(list(parse(dsn(recipients=[rcpt(diagnostic="connect: connection refused")])).iter_parts())[1])
    assert blocks[1]["Diagnostic-Code"] == "X-mssante-relay; connect: connection refused"


def test_dsn_utf8_address() -> None:
    blocks = blocks_of(list(parse(dsn(recipients=[rcpt(address="hélène@exemple.mssante.fr")])).iter_parts())[1])
    assert blocks[1]["Final-Recipient"] == "utf-8; h\\x{E9}l\\x{E8}ne@exemple.mssante.fr"  # RFC 6533 §3


def test_dsn_human_text_french_first() -> None:
    human = text_of(list(parse(dsn()).iter_parts())[0])
    assert human.index("Votre message reçu le 23/11/2026") < human.index("Your message received on 2026-11-23")
    assert "adresse du destinataire inconnue (5.1.1)" in human
    assert "unknown recipient address (5.1.1)" in human
    assert PATIENT in human
    assert "Glycemie" not in human
    assert "\n-- \n" not in human  # not a signature delimiter: clients would hide the English


def test_dsn_returns_headers_only() -> None:
    raw = dsn()
    part = list(parse(raw).iter_parts())[2]
    assert part["Content-Transfer-Encoding"] == "7bit"
    returned = text_of(part)
    assert "Message-ID: <m1@hopital-exemple.mssante.fr>" in returned
    assert "Subject: =?utf-8?q?R=C3=A9sultats_d=27analyse?=" in returned
    assert "Glycemie" not in returned and b"Glycemie" not in raw
    assert "Cordialement" not in returned


def test_dsn_returns_eight_bit_headers_unchanged() -> None:
    original = "Subject: Résultats\r\nX-Long: " + "x" * 1500 + "\r\n"
    part = list(parse(dsn(original_headers=original.encode())).iter_parts())[2]
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert part.get_payload(decode=True) == original.encode()


def test_dsn_without_original_headers_has_two_parts() -> None:
    msg = parse(dsn(original_headers=b""))
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "message/delivery-status"]


def test_dsn_delayed() -> None:
    until = NOW + timedelta(days=4)
    msg = parse(dsn(action="delayed", will_retry_until=until,
                    recipients=[rcpt(status="4.4.1", diagnostic="connect: timed out")]))
    assert msg["Subject"].startswith("Message en attente de remise / Delayed Mail")
    block = blocks_of(list(msg.iter_parts())[1])[1]
    assert block["Action"] == "delayed"
    assert block["Status"] == "4.4.1"
    assert block["Will-Retry-Until"] == "Fri, 27 Nov 2026 18:36:30 +0000"
    human = text_of(list(msg.iter_parts())[0])
    assert "jusqu'au 27/11/2026" in human and "until 2026-11-27" in human


def test_dsn_failed_has_no_will_retry_until() -> None:
    block = blocks_of(list(parse(dsn(will_retry_until=NOW)).iter_parts())[1])[1]
    assert "Will-Retry-Until" not in block


@pytest.mark.parametrize("action, given_status, expected", [
    ("failed", "5.1", "5.0.0"), ("failed", "550", "5.0.0"), ("failed", "2.0.0", "5.0.0"),
    ("failed", "4.4.7", "4.4.7"), ("delayed", "5.1.1", "4.0.0"), ("delayed", "x", "4.0.0"),
])
def test_dsn_status_checked(action: str, given_status: str, expected: str) -> None:
    block = blocks_of(list(parse(dsn(action=action, recipients=[rcpt(status=given_status)])).iter_parts())[1])[1]
    assert block["Status"] == expected


def test_dsn_bad_arguments() -> None:
    with pytest.raises(ValueError):
        dsn(action="delivered")
    with pytest.raises(ValueError):
        dsn(recipients=[])


def test_dsn_diagnostic_injection_neutralised() -> None:
    evil = "550 5.1.1 nope\r\nX-Injected: yes\r\n\r\nFinal-Recipient: rfc822; evil@example.org\nBcc: x@y"
    raw = dsn(recipients=[rcpt(diagnostic=evil)])
    assert_wire_safe(raw)
    msg = parse(raw)
    blocks = blocks_of(list(msg.iter_parts())[1])
    assert len(blocks) == 2
    assert "X-Injected" not in blocks[1] and "Bcc" not in blocks[1]
    assert blocks[1]["Diagnostic-Code"] == ("smtp; 550 5.1.1 nope X-Injected: yes Final-Recipient: rfc822; "
                                            "evil@example.org Bcc: x@y")
    assert not any(line.startswith((b"X-Injected", b"Bcc")) for line in raw.split(b"\r\n"))


def test_dsn_diagnostic_made_printable_ascii_and_bounded() -> None:
    raw = dsn(recipients=[rcpt(diagnostic="550 5.1.1 bo\u00eete\x00\x1b[31m " + "y" * 2000)])
    assert_wire_safe(raw)
    code = blocks_of(list(parse(raw).iter_parts())[1])[1]["Diagnostic-Code"]
    assert code.startswith("smtp; 550 5.1.1 bo?te [31m y")  # controls become spaces
    assert len(code) <= len("smtp; ") + 500


def test_dsn_long_diagnostic_folds_at_spaces() -> None:
    words = " ".join(["mot"] * 120)
    raw = dsn(recipients=[rcpt(diagnostic=f"550 5.1.1 {words}")])
    status = raw.split(b"message/delivery-status", 1)[1].split(b"text/rfc822-headers", 1)[0]
    assert max(len(line) for line in status.split(b"\r\n")) <= 78
    assert blocks_of(list(parse(raw).iter_parts())[1])[1]["Diagnostic-Code"] == f"smtp; 550 5.1.1 {words}"


# --- original_headers_of -------------------------------------------------------------

def test_original_headers_crlf() -> None:
    assert original_headers_of(ORIGINAL) == ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"


def test_original_headers_lf() -> None:
    assert original_headers_of(b"A: 1\nB: 2\n\nbody\n\nmore") == b"A: 1\nB: 2\n"


def test_original_headers_without_body() -> None:
    assert original_headers_of(b"A: 1\r\nB: 2\r\n") == b"A: 1\r\nB: 2\r\n"


@pytest.mark.parametrize("raw", [b"\r\nbody", b"\nbody", b""])
def test_original_headers_none(raw: bytes) -> None:
    assert original_headers_of(raw) == b""


def test_original_headers_bounded_at_a_line_end() -> None:
    raw = b"".join(b"X-H%03d: %s\r\n" % (i, b"v" * 50) for i in range(100)) + b"\r\nbody"
    cut = original_headers_of(raw, limit=1000)
    assert len(cut) <= 1000 and cut.endswith(b"\r\n")
    assert raw.startswith(cut)
    assert original_headers_of(raw, limit=10) == b""


# --- MDN ----------------------------------------------------------------------------

def test_mdn_structure_and_fields() -> None:
    raw = mdn()
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "disposition-notification"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/disposition-notification"]
    assert msg["From"] == PATIENT  # RFC 8098 §3: the person the MDN is issued for
    assert msg["To"] == PRO
    assert msg["In-Reply-To"] == "<m1@hopital-exemple.mssante.fr>"
    assert msg["References"] == "<m1@hopital-exemple.mssante.fr>"
    assert msg["Message-ID"].endswith("@webmail.patient.mssante.fr>")
    (fields,) = blocks_of(parts[1])
    assert list(fields.items()) == [
        ("Reporting-UA", "webmail.patient.mssante.fr; mssante-relay"),
        ("Final-Recipient", f"rfc822; {PATIENT}"),
        ("Original-Message-ID", "<m1@hopital-exemple.mssante.fr>"),
        ("Disposition", "manual-action/MDN-sent-automatically; displayed"),
    ]


def test_mdn_original_recipient() -> None:
    (fields,) = blocks_of(list(parse(mdn(original_recipient=f"rfc822;{PATIENT}")).iter_parts())[1])
    assert list(fields.keys())[:3] == ["Reporting-UA", "Original-Recipient", "Final-Recipient"]
    assert fields["Original-Recipient"] == f"rfc822; {PATIENT}"


def test_mdn_subject_encoded() -> None:
    raw = mdn()
    assert parse(raw)["Subject"] == "Lu / Read: Résultats d'analyse"
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]


def test_mdn_human_text() -> None:
    human = text_of(list(parse(mdn()).iter_parts())[0])
    assert human.index("a été affiché") < human.index("was displayed")
    assert "Résultats" not in human  # the subject stays in the Subject field
    assert "23/11/2026" in human


def test_mdn_without_subject_or_id() -> None:
    msg = parse(mdn(original_subject=None, original_message_id=None))
    assert msg["Subject"] == "Lu / Read"
    assert "In-Reply-To" not in msg and "References" not in msg
    (fields,) = blocks_of(list(msg.iter_parts())[1])
    assert "Original-Message-ID" not in fields


@pytest.mark.parametrize("bad_id", ["not an id", "<a b@c>", "<a@b>\r\nBcc: x@y", "<@>", "<x>"])
def test_mdn_invalid_original_id_left_out(bad_id: str) -> None:
    raw = mdn(original_message_id=bad_id)
    assert_wire_safe(raw)
    msg = parse(raw)
    assert "In-Reply-To" not in msg and "Bcc" not in msg


def test_mdn_id_without_brackets_accepted() -> None:
    assert parse(mdn(original_message_id="m1@hopital-exemple.mssante.fr"))["In-Reply-To"] == \
        "<m1@hopital-exemple.mssante.fr>"


def test_long_message_id_not_encoded() -> None:
    long_id = "<" + "a" * 150 + "@hopital-exemple.mssante.fr>"
    raw = mdn(original_message_id=long_id)
    assert_wire_safe(raw)
    assert f"In-Reply-To: {long_id}".encode() in raw  # not RFC 2047-mangled
    assert parse(raw)["References"] == long_id


def test_mdn_subject_injection_neutralised() -> None:
    raw = mdn(original_subject="Résultats\r\nBcc: evil@example.org\r\n\r\nbody")
    assert_wire_safe(raw)
    msg = parse(raw)
    assert "Bcc" not in msg
    assert msg["Subject"] == "Lu / Read: Résultats Bcc: evil@example.org body"


def test_mdn_hostname_defaults_to_ua_host() -> None:
    assert parse(mdn(reporting_ua="imap.patient.mssante.fr"))["Message-ID"].endswith("@imap.patient.mssante.fr>")
    assert parse(mdn(hostname=HOST))["Message-ID"].endswith(f"@{HOST}>")


# --- TEST acknowledgement ------------------------------------------------------------

def test_test_reply() -> None:
    raw = ack()
    msg = parse(raw)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg["From"] == TEST_ADDR
    assert msg["To"] == PRO
    assert msg["Subject"] == "Re: TEST messagerie"
    assert msg["In-Reply-To"] == msg["References"] == "<t1@hopital-exemple.mssante.fr>"
    text = text_of(msg)
    assert text.index("Votre message de test a bien été reçu par l'opérateur patient.mssante.fr") \
        < text.index("Your test message was received")
    assert "<t1@hopital-exemple.mssante.fr>" in text


@pytest.mark.parametrize("subject, expected", [
    ("RE: TEST", "RE: TEST"), ("re:TEST", "re:TEST"), (None, None), ("", None), ("  \r\n ", None),
])
def test_test_reply_subject(subject: str | None, expected: str | None) -> None:
    got = parse(ack(original_subject=subject))["Subject"]
    if expected is None:
        assert got == "Accusé de réception de votre message de test / Test message acknowledgement"
    else:
        assert got == expected


# --- notification --------------------------------------------------------------------

def test_notification_carries_no_health_content() -> None:
    raw = notification(count=3)
    msg = parse(raw)
    assert msg.get_content_type() == "text/plain"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "In-Reply-To" not in msg and "References" not in msg
    text = text_of(msg)
    assert "Vous avez 3 nouveaux messages dans votre messagerie de santé Mon espace santé." in text
    assert "You have 3 new messages" in text
    assert text.index("Vous avez") < text.index("You have")
    assert "https://webmail.patient.mssante.fr/" in text
    # the only addresses anywhere are the notice's own From and To
    found = set(re.findall(rb"[\w.+-]+@[\w.-]+", raw))
    assert found <= {b"ne-pas-repondre@patient.mssante.fr", b"jean.dupont@example.org"} | {
        m for m in found if m.endswith(b"@mx.patient.mssante.fr")}
    assert msg["Subject"] == "Nouveaux messages dans Mon espace santé / New messages in Mon espace santé"


def test_notification_singular_and_documents() -> None:
    msg = parse(notification(kind="document", count=1, webmail_url=None))
    text = text_of(msg)
    assert "Vous avez 1 nouveau document dans votre profil Mon espace santé." in text
    assert "You have 1 new document" in text and "To see it" in text
    assert "http" not in text
    assert msg["Subject"] == "Nouveau document dans Mon espace santé / New document in Mon espace santé"


@pytest.mark.parametrize("kw", [
    {"kind": "letter"}, {"count": 0}, {"count": -2},
    {"webmail_url": "javascript:alert(1)"}, {"webmail_url": "https://x/\r\nBcc: y@z"},
    {"webmail_url": "https://exemple.fr/a b"},
])
def test_notification_bad_arguments(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        notification(**kw)


# --- never raise, always wire-safe ---------------------------------------------------

@settings(max_examples=examples(200), deadline=None)
@given(diagnostic=st.text(max_size=1200), status=st.text(max_size=12), envid=st.text(max_size=150),
       address=st.text(min_size=1, max_size=80), remote=st.text(max_size=80))
def test_dsn_never_raises(diagnostic: str, status: str, envid: str, address: str, remote: str) -> None:
    r = FailedRecipient(address, status, diagnostic, remote_mta=remote or None, original_recipient=address)
    raw = dsn(recipients=[r, rcpt()], original_envelope_id=envid)
    assert_wire_safe(raw)
    blocks = blocks_of(list(parse(raw).iter_parts())[1])
    assert len(blocks) == 3
    code = str(blocks[1].get("Diagnostic-Code", ""))
    assert "\r" not in code and "\n" not in code


@settings(max_examples=examples(200), deadline=None)
@given(headers=st.binary(max_size=3000))
def test_dsn_any_original_headers(headers: bytes) -> None:
    raw = dsn(original_headers=headers)
    assert_wire_safe(raw)
    parts = list(parse(raw).iter_parts())
    assert 2 <= len(parts) <= 3


@settings(max_examples=examples(200), deadline=None)
@given(subject=st.text(max_size=600), msgid=st.text(max_size=100))
def test_mdn_and_test_reply_never_raise(subject: str, msgid: str) -> None:
    for raw in (mdn(original_subject=subject, original_message_id=msgid),
                ack(original_subject=subject, original_message_id=msgid)):
        assert_wire_safe(raw)
        msg = parse(raw)
        assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
        assert header_names(raw).count("Subject") == 1


@settings(max_examples=examples(100), deadline=None)
@given(subject=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=1, max_size=200))
def test_printable_ascii_subject_round_trips(subject: str) -> None:
    cleaned = re.sub(r" {2,}", " ", subject).strip()
    if cleaned:
        assert parse(mdn(original_subject=subject))["Subject"] == f"Lu / Read: {cleaned}"
