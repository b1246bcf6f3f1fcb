"""Issue 15 item 6: a DSN read field by field, as the receiving MTA and the
professional's client see it (RFC 3464 §2.2 per-message, §2.3 per-recipient fields;
RFC 6522 multipart/report). The Diagnostic-Code once read "X-mssante-relay; smtp; 550 ..."."""
from __future__ import annotations

import email
import email.utils
import time
from email.message import Message
from pathlib import Path

from tests.integration.conftest import INS_ACTIVE, RunningDaemon
from tests.integration.test_conversations import PATIENT, ProHandler, pro_writes, reply, world  # noqa: F401

UNKNOWN = "inconnu@test-operator.mssante.fr"


def unfolded(block: Message) -> dict[str, str]:
    """A block's fields unfolded (RFC 5322 §2.2.3: a fold is CRLF before whitespace)."""
    return {k: v.replace("\r\n", "").replace("\n", "") for k, v in block.items()}


def _date(value: str | None) -> None:
    assert value is not None and email.utils.parsedate_to_datetime(value).tzinfo is not None, value


def test_every_field_of_a_bounce(world: tuple[RunningDaemon, ProHandler, Path]) -> None:
    rd, pro, _ = world
    pro_writes(rd, extra=f"Reply-To: {UNKNOWN}\r\n")
    with rd.submission() as s:
        assert s.sendmail(PATIENT, [UNKNOWN], reply(to=UNKNOWN, subject="Re: Resultats du bilan")) == {}
    deadline = time.monotonic() + 20
    while len(rd.inbox(INS_ACTIVE)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    raw = rd.inbox(INS_ACTIVE)[-1]
    dsn = email.message_from_bytes(raw)
    hostname = rd.config.hostname
    # RFC 6522: multipart/report, report-type delivery-status, three parts
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["From"].lower().startswith("postmaster@") or "postmaster@" in dsn["From"].lower()
    assert PATIENT in dsn["To"]
    assert dsn["Auto-Submitted"] == "auto-replied"  # RFC 3834 §5
    _date(dsn["Date"])
    assert dsn["Message-ID"]
    human, status, original = dsn.get_payload()
    assert human.get_content_type() == "text/plain"
    assert status.get_content_type() == "message/delivery-status"
    assert original.get_content_type() in ("text/rfc822-headers", "message/rfc822-headers")
    blocks: list[Message] = status.get_payload()
    assert len(blocks) == 2  # one per-message block, one recipient
    per_message, per_rcpt = (unfolded(b) for b in blocks)
    # RFC 3464 §2.2
    assert per_message["Original-Envelope-Id"]
    kind, _, mta = per_message["Reporting-MTA"].partition("; ")
    assert (kind, mta) == ("dns", hostname)
    _date(per_message["Arrival-Date"])
    # RFC 3464 §2.3
    assert per_rcpt["Final-Recipient"] == f"rfc822; {UNKNOWN}"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"].startswith("dns; ")
    assert per_rcpt["Diagnostic-Code"] == \
        f"smtp; 550 5.1.1 <{UNKNOWN}>: Recipient address rejected: User unknown"
    _date(per_rcpt["Last-Attempt-Date"])
    assert "Will-Retry-Until" not in per_rcpt  # only in a "delayed" report
    # the original's headers, never its body
    headers = original.get_payload() if original.is_multipart() is False else ""
    assert "Subject: Re: Resultats du bilan" in str(headers)
    assert "Merci docteur" not in raw.decode("utf-8", "replace")
    assert pro.received == []
