"""relay/inbound: the parse-and-decide step of the MX (issue 15 item 1), as plain data
in and out, parsed once."""
from __future__ import annotations

import datetime as dt
import email.feedparser
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from email.message import EmailMessage

import pytest

import dossier_bridge.dossier as dossier_module
from policy.recipients import MailboxState
from policy.attachments import AttachmentLimits
from policy.decisions import Decision
from policy.trust import TrustList
from relay.inbound.pipeline import InboundDecision, InboundRequest, decide
from tests.unit.test_attachments import pdf_bytes

DOMAIN = "patient.mssante.fr"
PRO = "dr.martin@test-operator.mssante.fr"
CERT = "CN=mail.test-operator.mssante.fr,O=Operateur test,C=FR"
TRUST = TrustList.build([("test-operator.mssante.fr", CERT)])
PATIENT = dossier_module.MailboxInfo(7, "279035121518989", MailboxState.ACTIVE, None,
                                     dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))


def mail(subject: str = "Compte rendu [FIN]", attach: bytes | None = None, receipt: bool = True) -> bytes:
    m = EmailMessage()
    m["From"] = f"Dr Martin <{PRO}>"
    m["To"] = f"{PATIENT.ins}@{DOMAIN}"
    m["Subject"] = subject
    m["Message-ID"] = "<cr-1@test-operator.mssante.fr>"
    if receipt:
        m["Disposition-Notification-To"] = PRO
    m.set_content("Bonjour.\n")
    if attach is not None:
        m.add_attachment(attach, maintype="application", subtype="pdf", filename="cr.pdf")
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


def request(raw: bytes, null_sender: bool = False) -> InboundRequest:
    return InboundRequest(raw, (PATIENT,), AttachmentLimits(), CERT, null_sender, TRUST, DOMAIN)


def test_a_professional_message_yields_everything_its_delivery_commits() -> None:
    got = decide(request(mail(subject="=?utf-8?q?R=C3=A9sultats_=5BFIN=5D?=", attach=pdf_bytes())))
    assert isinstance(got, InboundDecision)
    assert got.parsed.subject == "Résultats [FIN]"  # decoded once (RFC 2047)
    assert got.conversation is not None and got.conversation.close_exchange
    assert got.conversation.correspondents == (PRO,)
    assert got.receipt == (PRO, "<cr-1@test-operator.mssante.fr>")
    [(mailbox, [document])] = got.filing.documents
    assert mailbox == PATIENT and document.meta["filename"] == "cr.pdf"


def test_a_bounce_opens_nothing_files_nothing() -> None:
    got = decide(request(mail(attach=pdf_bytes()), null_sender=True))
    assert isinstance(got, InboundDecision)
    assert (got.conversation, got.receipt, got.filing.documents) == (None, None, [])


def test_a_refused_part_is_the_decision() -> None:
    got = decide(request(mail(attach=b"MZ\x90\x00 not a pdf at all")))
    assert isinstance(got, Decision) and (got.code, got.status) == (554, "5.6.1")


def test_the_message_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """One run of the one MIME parser per decision: the attachment rules, the dossier
    mapping and the conversation rules all read the same tree (issue 15 item 3)."""
    import policy.mime as mime_module
    calls: list[int] = []
    real = mime_module.parse

    def counted(raw: bytes) -> mime_module.Part:
        calls.append(len(raw))
        return real(raw)

    def stdlib_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the stdlib email parser read the message")

    monkeypatch.setattr(mime_module, "parse", counted)
    monkeypatch.setattr(email.feedparser.FeedParser, "feed", stdlib_parse)
    assert isinstance(decide(request(mail(attach=pdf_bytes()))), InboundDecision)
    assert len(calls) == 1


def test_request_and_decision_cross_a_process_boundary() -> None:
    req = request(mail(attach=pdf_bytes()))
    here = decide(req)
    assert pickle.loads(pickle.dumps(req)) == req
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        there = pool.submit(decide, req).result(timeout=120)
    assert isinstance(here, InboundDecision) and isinstance(there, InboundDecision)
    assert (there.conversation, there.receipt, there.parsed.head) == (here.conversation, here.receipt, here.parsed.head)
    assert [(m, [d.sha256 for d in docs]) for m, docs in there.filing.documents] == \
        [(m, [d.sha256 for d in docs]) for m, docs in here.filing.documents]
