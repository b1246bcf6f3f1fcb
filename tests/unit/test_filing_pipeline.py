"""dossier_bridge/filing.py: the patient's filing ("Dossier medical" IMAP folder, the
webmail's button) goes through the inbound pipeline's entry: one parse of each message
by the one MIME parser, then the MX's rules and dossier mapping on that parse."""
from __future__ import annotations

import email.feedparser
import os
from email.message import EmailMessage

import pytest

import policy.mime as mime_module
from dossier_bridge.filing import file_messages
from mailbox_store.crypto import MasterKey
from mailbox_store.store import Store
from policy.attachments import AttachmentLimits
from policy.recipients import MailboxState
from tests.unit.test_attachments import pdf_bytes

INS = "279035121518989"


def message() -> bytes:
    m = EmailMessage()
    m["From"] = "Dr Martin <dr.martin@test-operator.mssante.fr>"
    m["To"] = f"{INS}@patient.mssante.fr"
    m["Subject"] = "Compte rendu"
    m["Message-ID"] = "<cr-7@test-operator.mssante.fr>"
    m.set_content("Bonjour.\n")
    m.add_attachment(pdf_bytes(), maintype="application", subtype="pdf", filename="cr.pdf")
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


async def test_filing_parses_each_message_once(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = await Store.open(store_url, MasterKey(os.urandom(32)))
    try:
        box = await store.create_mailbox(INS, state=MailboxState.ACTIVE)
        raw = message()
        [one] = await store.deliver([box], raw)
        [two] = await store.deliver([box], raw.replace(b"cr-7@", b"cr-8@"))
        calls: list[int] = []
        real = mime_module.parse

        def counted(data: bytes) -> mime_module.Part:
            calls.append(len(data))
            return real(data)

        def stdlib_parse(*args: object, **kwargs: object) -> None:
            raise AssertionError("the stdlib email parser read the message")

        monkeypatch.setattr(mime_module, "parse", counted)
        monkeypatch.setattr(email.feedparser.FeedParser, "feed", stdlib_parse)
        limits = AttachmentLimits()
        done = await file_messages(store, box, "INBOX", [one.uid, two.uid], limits, "patient")
        assert (done.filed, done.not_filed) == (2, 0)
        assert len(calls) == 2  # one parse per message, the rules and the mapping included
        monkeypatch.undo()
        docs = await store.documents(box)
        assert sorted(d.meta["source_message_id"] for d in docs) == [
            "<cr-7@test-operator.mssante.fr>", "<cr-8@test-operator.mssante.fr>"]
        assert {d.meta["filename"] for d in docs} == {"cr.pdf"}
    finally:
        await store.close()
