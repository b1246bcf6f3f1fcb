"""relay/inbound: the parse-and-decide step of the MX (issue 15 item 1), as plain data
in and out, parsed once."""
from __future__ import annotations

import dataclasses
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
from relay.inbound.pipeline import (InboundDecision, InboundRequest, SubmissionDecision, SubmissionRequest, decide,
                                   decide_submission)
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


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the messages the one MIME parser read; the stdlib parser fails the test."""
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
    return calls


def test_the_message_is_parsed_once(parses: list[int]) -> None:
    """One run of the one MIME parser per decision: the attachment rules, the dossier
    mapping and the conversation rules all read the same tree (issue 15 item 3)."""
    assert isinstance(decide(request(mail(attach=pdf_bytes()))), InboundDecision)
    assert len(parses) == 1


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


# --- submission: the same pipeline, the patient's rule set ---------------------------

def patient_mail(sender: str = f"{PATIENT.ins}@{DOMAIN}", attach: bytes | None = None,
                 in_reply_to: str | None = "<cr-1@test-operator.mssante.fr>") -> bytes:
    m = EmailMessage()
    m["From"] = sender
    m["To"] = PRO
    m["Subject"] = "Re: Compte rendu"
    if in_reply_to is not None:
        m["In-Reply-To"] = in_reply_to
        m["References"] = f"<root@test-operator.mssante.fr> {in_reply_to}"
    m.set_content("Merci.\n")
    if attach is not None:
        m.add_attachment(attach, maintype="application", subtype="pdf", filename="scan.pdf")
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


PATIENT_LIMITS = AttachmentLimits(max_part_bytes=5 * 1024 * 1024)


def submission(raw: bytes, mail_from: str = f"{PATIENT.ins}@{DOMAIN}") -> SubmissionDecision | Decision:
    return decide_submission(SubmissionRequest(raw, mail_from, PATIENT_LIMITS))


def test_a_patient_message_yields_the_ids_its_conversation_rule_needs() -> None:
    got = submission(patient_mail(attach=pdf_bytes()))
    assert isinstance(got, SubmissionDecision)
    assert got.in_reply_to == ("<cr-1@test-operator.mssante.fr>",)
    assert got.references == ("<root@test-operator.mssante.fr>", "<cr-1@test-operator.mssante.fr>")
    assert got.parsed.professional.from_addresses == (f"{PATIENT.ins}@{DOMAIN}",)


def test_submission_rules_in_order() -> None:
    bare = patient_mail().replace(b"Merci.\r\n", b"Merci.\n")
    got = submission(bare.replace(b"From: ", b"From: x"))  # bare LF first, before the From rule
    assert isinstance(got, Decision) and (got.code, got.rule) == (500, "bare_line_ending")
    got = submission(patient_mail(sender="someone.else@patient.mssante.fr", attach=b"MZ\x90\x00"))
    assert isinstance(got, Decision) and (got.code, got.rule) == (553, "from_mismatch")  # before attachments
    got = submission(patient_mail(attach=pdf_bytes() + bytes(5 * 1024 * 1024)))
    assert isinstance(got, Decision) and (got.code, got.status, got.rule) == (552, "5.3.4", "attachment_too_big")
    got = submission(patient_mail(attach=b"MZ\x90\x00 not a pdf at all"))
    assert isinstance(got, Decision) and (got.code, got.status) == (554, "5.6.1")


def test_a_patient_message_is_parsed_once(parses: list[int]) -> None:
    assert isinstance(submission(patient_mail(attach=pdf_bytes())), SubmissionDecision)
    assert len(parses) == 1


def test_the_test_address_check_reads_the_one_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The TEST acknowledgement's rules (RFC 3834 loops, TEST in subject and body) read
    the MX's parse: no parser runs again (relay/smtp/autotest.py)."""
    from relay.smtp.autotest import ack_refusal
    test = mail(subject="TEST de messagerie", receipt=False).replace(b"Bonjour.", b"Ceci est un TEST.")
    decided = decide(dataclasses.replace(request(test), test_address=True))
    plain = decide(dataclasses.replace(request(mail(subject="TEST", receipt=False)), test_address=True))
    assert isinstance(decided, InboundDecision) and isinstance(plain, InboundDecision)
    assert (decided.parsed.test_request, plain.parsed.test_request) == (True, False)  # no TEST in the body
    assert decide(request(test)).parsed.test_request is None  # type: ignore[union-attr]  # not asked, not read

    def parsed_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed a second time")

    import policy.mime as mime_module
    monkeypatch.setattr(mime_module, "parse", parsed_again)
    monkeypatch.setattr(email.feedparser.FeedParser, "feed", parsed_again)
    assert ack_refusal(f"<{PRO}>", decided.parsed, DOMAIN) == (None, PRO)
    assert ack_refusal("<>", decided.parsed, DOMAIN)[0] == "null_sender"
    assert ack_refusal(f"<{PRO}>", plain.parsed, DOMAIN) == ("not_a_test_request", None)


def test_a_decision_holds_no_decoded_content() -> None:
    """What waits for the commit is small (issue 15 §2: at most two copies of a message):
    the decision keeps the header section and its facts, not the tree nor the parts."""
    req = request(mail(attach=pdf_bytes(size=200_000)))
    got = decide(req)
    assert isinstance(got, InboundDecision)
    assert len(pickle.dumps(got.parsed)) < 4096
    assert got.parsed.head == req.raw[:req.raw.index(b"\r\n\r\n") + 2]
