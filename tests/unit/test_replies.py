"""relay/smtp/replies.py: enhanced status codes (RFC 2034) on aiosmtpd's stock replies."""
from __future__ import annotations

import re

import pytest

from policy.decisions import MESSAGE_TOO_BIG, RELAY_DENIED
from relay.smtp.replies import with_enhanced_code

ENHANCED = re.compile(r"^\d{3} [245]\.\d{1,3}\.\d{1,3} ")


@pytest.mark.parametrize("stock, expected", [
    ("503 Error: need MAIL command", "503 5.5.1 Error: need MAIL command"),
    ("503 Error: need RCPT command", "503 5.5.1 Error: need RCPT command"),
    ("503 Error: nested MAIL command", "503 5.5.1 Error: nested MAIL command"),
    ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
    ("501 Syntax: MAIL FROM: <address>", "501 5.5.4 Syntax: MAIL FROM: <address>"),
    ("502 Command not implemented", "502 5.5.1 Command not implemented"),
    ("250 OK", "250 2.0.0 OK"),
    ("530 Must issue a STARTTLS command first", "530 5.7.0 Must issue a STARTTLS command first"),
])
def test_stock_replies_get_enhanced_codes(stock: str, expected: str) -> None:
    assert with_enhanced_code(stock) == expected


@pytest.mark.parametrize("code, cls", [("559", "5"), ("459", "4"), ("259", "2")])
def test_unknown_code_gets_class_default(code: str, cls: str) -> None:
    # RFC 3463 §3.1: X.0.0 "other undefined status" of the reply's class
    assert with_enhanced_code(f"{code} Something") == f"{code} {cls}.0.0 Something"


@pytest.mark.parametrize("stock", [
    "552 Error: Too much mail data",
    "552 Error: message size exceeds fixed maximum message size",
])
def test_552_becomes_message_too_big(stock: str) -> None:
    assert with_enhanced_code(stock) == MESSAGE_TOO_BIG.smtp()
    assert with_enhanced_code(stock).startswith("552 5.3.4 ")


@pytest.mark.parametrize("reply", [
    "553 5.1.3 Error: malformed address",
    "538 5.7.11 Encryption required for requested authentication mechanism",
    "421 4.7.0 MAIL sent too many times",
    "250 2.1.0 OK",
    "552 5.2.2 Mailbox full",  # a 552 that already says why is not rewritten
    RELAY_DENIED.smtp(),
    MESSAGE_TOO_BIG.smtp(),
])
def test_replies_with_enhanced_code_untouched(reply: str) -> None:
    assert with_enhanced_code(reply) == reply


@pytest.mark.parametrize("reply", [
    "220 mx.patient.mssante.fr ESMTP ready",
    "354 End data with <CR><LF>.<CR><LF>",
    "334 ",
    "334 VXNlcm5hbWU6",
])
def test_greeting_closing_data_and_sasl_untouched(reply: str) -> None:
    assert with_enhanced_code(reply) == reply


@pytest.mark.parametrize("reply", [
    "250-mx.patient.mssante.fr",
    "250-SIZE 26214400",
    "250-mx.patient.mssante.fr\r\n250-PIPELINING\r\n250 HELP",
])
def test_multi_line_continuation_untouched(reply: str) -> None:
    assert with_enhanced_code(reply) == reply


def test_result_always_has_an_enhanced_code_after_rewrite() -> None:
    for code in ("250", "421", "451", "452", "454", "500", "501", "502", "503", "504", "530",
                 "550", "552", "553", "554"):
        out = with_enhanced_code(f"{code} text")
        assert ENHANCED.match(out), out
        assert out[:3] == code
        assert out[4] == code[0]  # the enhanced class matches the reply class


def test_closing_reply_gets_its_code() -> None:
    assert with_enhanced_code("221 Bye") == "221 2.0.0 Bye"
    assert with_enhanced_code("555 Unsupported") == "555 5.5.4 Unsupported"


def test_every_decision_text_is_printable_ascii() -> None:
    """RFC 5321 §4.2: reply text is US-ASCII."""
    import policy.decisions as d
    for name in dir(d):
        v = getattr(d, name)
        if isinstance(v, d.Decision):
            line = v.smtp()
            assert line.isascii() and line.isprintable(), name
