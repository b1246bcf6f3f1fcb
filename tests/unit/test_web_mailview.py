"""relay/web/mailview.py: a conversation's message is walked (and its attachments
decoded) once per view, and the view is the same as its summary says."""
from __future__ import annotations

from email.message import EmailMessage

import pytest

from policy.attachments import AttachmentLimits
from relay.web import mailview
from tests.web.files import pdf


def _raw() -> bytes:
    m = EmailMessage()
    m["From"] = "Dr Martin <dr.martin@test-operator.mssante.fr>"
    m["To"] = "279035121518989@patient.mssante.fr"
    m["Subject"] = "Resultats"
    m["Date"] = "Mon, 23 Nov 2026 10:00:00 +0100"
    m["Message-ID"] = "<r1@test-operator.mssante.fr>"
    m.set_content("Bonjour, voici vos resultats.\n")
    m.add_attachment(pdf("Resultats", size=200 * 1024), maintype="application", subtype="pdf",
                     filename="resultats.pdf")
    return m.as_bytes()


def test_a_full_view_walks_the_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = mailview.mime_parts

    def counting(raw: bytes, limits: AttachmentLimits):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(raw, limits)

    monkeypatch.setattr(mailview, "mime_parts", counting)
    limits = AttachmentLimits()
    view = mailview.full_view(4, _raw(), limits)
    assert len(calls) == 1  # the 200 KB PDF's base64 is decoded once, not twice
    assert view.summary == mailview.summarise(4, _raw(), limits)
    assert view.summary.attachments == 1 and view.summary.subject == "Resultats"
    assert [(a.filename, a.mime_type) for a in view.attachments] == [("resultats.pdf", "application/pdf")]
    assert view.text == "Bonjour, voici vos resultats.\n"
