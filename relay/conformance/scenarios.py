"""The catalogue of `conformance run`: each scenario sends plain mail to the deployment
and checks what comes back against our rules (DESIGN.md §4, the README's tables).

Implementation notes:
- A scenario returns (Status, reason); the runner adds the exchange it logged and
  turns a network error into FAIL with its class name (never a traceback).
- Scenarios that need something the configuration lacks (no --listen, no patient
  password, no second sender, no closed mailbox) are SKIP with the reason, never PASS.
- Each scenario writes as its own subaddress of the sender (`Target.tagged`), so
  replies are told apart and one scenario's [FIN] does not close another's exchange.
"""
from __future__ import annotations

import email
import html
import http.client
import email.policy
import imaplib
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from relay.conformance.listener import REFUSE_MARK, Listener, Received
from relay.conformance.peer import (Imap, KitError, Log, Reply, Smtp, Target, Webmail, patient_submission,
                                    professional, random_ins, self_signed, send_as_professional, token, wrong_key)
from relay.conformance.results import Outcome, Status
from relay.conformance.samples import KIT_NIL, XdmDoc, minimal_cda, professional_message, xdm_package

TEST_ADDRESS = "reponse.automatique-test"
Verdict = tuple[Status, str]


@dataclass(slots=True)
class Context:
    target: Target
    listener: Listener | None
    scratch: Path


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    rule: str
    run: Callable[[Context, Log], Verdict]


def _pass(reason: str) -> Verdict:
    return Status.PASS, reason


def _fail(reason: str) -> Verdict:
    return Status.FAIL, reason


def _skip(reason: str) -> Verdict:
    return Status.SKIP, reason


def _expect(r: Reply, code: int, status: str, what: str) -> Verdict:
    if r.is_(code, status):
        return _pass(f"{what}: {r.code} {r.status}")
    return _fail(f"{what}: expected {code} {status}, got {r}")


def _msg(ctx: Context, mail_from: str, subject: str, body: str = "Bonjour,\r\nmessage du kit de conformite.\r\n",
         headers: dict[str, str] | None = None, attachments: list[tuple[bytes, str, str]] | None = None,
         message_id: str | None = None) -> tuple[bytes, str]:
    mid = message_id or f"<kit-{token()}@{mail_from.rpartition('@')[2]}>"
    h = {"X-MSS-NIL": KIT_NIL}
    h.update(headers or {})
    return professional_message(mail_from, ctx.target.patient_address, subject, body, mid, attachments, h), mid


def _parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _needs_listen(ctx: Context) -> Verdict | None:
    if ctx.listener is None:
        return _skip("needs --listen: the kit cannot see what the deployment sends back")
    return None


def _needs_patient(ctx: Context) -> Verdict | None:
    t = ctx.target
    if t.password is None:
        return _skip("needs the patient's password (--patient-password-stdin)")
    if t.imap is None or t.submission is None:
        return _skip("needs the deployment's IMAP and submission ports (--imap, --submission)")
    return None


def _to(addr: str) -> Callable[[Received], bool]:
    return lambda m: any(r.lower() == addr.lower() for r in m.rcpt_tos)


# ---- the TEST address ---------------------------------------------------------------

def test_ack(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_listen(ctx)) is not None:
        return v
    sender = ctx.target.tagged(f"test-{token()}")
    raw, _ = _msg(ctx, sender, "TEST de bout en bout", "Ceci est un TEST.\r\n")
    r = send_as_professional(ctx.target, log, sender, raw, f"{TEST_ADDRESS}@{ctx.target.domain}")
    if r.code != 250:
        return _fail(f"the TEST address refused the message: {r}")
    got = ctx.listener.wait(_to(sender), ctx.target.wait)  # type: ignore[union-attr]
    if got is None:
        return _fail(f"no acknowledgement reached {sender} within {ctx.target.wait:.0f} s")
    m = _parse(got.content)
    log.note(f"received from <{got.mail_from}> to {', '.join(got.rcpt_tos)}: Subject: {m.get('Subject')}, "
             f"Auto-Submitted: {m.get('Auto-Submitted')}")
    if (m.get("Auto-Submitted") or "").strip().lower() != "auto-replied":
        return _fail(f"the acknowledgement lacks 'Auto-Submitted: auto-replied' (RFC 3834 §5): "
                     f"{m.get('Auto-Submitted')!r}")
    if got.mail_from not in ("", "<>"):
        return _fail(f"the acknowledgement's reverse-path is <{got.mail_from}>, not the null sender (RFC 3834 §4)")
    return _pass("acknowledgement received, Auto-Submitted: auto-replied, from the null reverse-path")


def _no_answer(ctx: Context, log: Log, sender: str, mail_from: str, subject: str, body: str) -> Verdict:
    if (v := _needs_listen(ctx)) is not None:
        return v
    raw, _ = _msg(ctx, sender, subject, body)
    r = send_as_professional(ctx.target, log, mail_from, raw, f"{TEST_ADDRESS}@{ctx.target.domain}")
    if r.code != 250:
        return _fail(f"the TEST address refused the message: {r}")
    got = ctx.listener.wait(_to(sender), ctx.target.quiet_wait)  # type: ignore[union-attr]
    if got is not None:
        return _fail(f"an answer reached {sender} (Subject: {_parse(got.content).get('Subject')!r})")
    return _pass(f"accepted, and nothing sent back within {ctx.target.quiet_wait:.0f} s")


def test_no_keyword(ctx: Context, log: Log) -> Verdict:
    sender = ctx.target.tagged(f"nokw-{token()}")
    return _no_answer(ctx, log, sender, sender, "Bonjour", "Un message sans le mot cle.\r\n")


def test_null_sender(ctx: Context, log: Log) -> Verdict:
    sender = ctx.target.tagged(f"null-{token()}")
    return _no_answer(ctx, log, sender, "", "TEST depuis l'expediteur nul", "TEST\r\n")


# ---- refusals -----------------------------------------------------------------------

def _rcpt(ctx: Context, log: Log, rcpt: str) -> Reply:
    with professional(ctx.target, log) as s:
        r = s.cmd("MAIL", f"FROM:<{ctx.target.sender}>")
        if r.code != 250:
            raise KitError(f"MAIL FROM <{ctx.target.sender}> refused: {r}")
        return s.cmd("RCPT", f"TO:<{rcpt}>")


def refusal_unknown_ins(ctx: Context, log: Log) -> Verdict:
    return _expect(_rcpt(ctx, log, f"{random_ins()}@{ctx.target.domain}"), 550, "5.1.1", "unknown INS")


def refusal_bad_key(ctx: Context, log: Log) -> Verdict:
    return _expect(_rcpt(ctx, log, f"{wrong_key(ctx.target.patient)}@{ctx.target.domain}"), 501, "5.1.3",
                   "wrong INS key")


def refusal_closed(ctx: Context, log: Log) -> Verdict:
    if ctx.target.closed_patient is None:
        return _skip("needs an opposed or closed mailbox (--closed-patient INS)")
    return _expect(_rcpt(ctx, log, f"{ctx.target.closed_patient}@{ctx.target.domain}"), 550, "5.2.1",
                   "opposed or closed mailbox")


def refusal_relay(ctx: Context, log: Log) -> Verdict:
    return _expect(_rcpt(ctx, log, "someone@example.org"), 550, "5.7.1", "foreign domain")


def refusal_no_starttls(ctx: Context, log: Log) -> Verdict:
    with Smtp(ctx.target, log) as s:
        return _expect(s.cmd("MAIL", f"FROM:<{ctx.target.sender}>"), 530, "5.7.0", "MAIL before STARTTLS")


def refusal_no_client_cert(ctx: Context, log: Log) -> Verdict:
    with Smtp(ctx.target, log) as s:
        try:
            s.starttls(None)
        except (ssl.SSLError, smtplib.SMTPException, OSError) as e:
            log.note(f"TLS handshake failed: {type(e).__name__}")
            return _pass("TLS handshake refused without a client certificate")
        return _expect(s.cmd("MAIL", f"FROM:<{ctx.target.sender}>"), 530, "5.7.0", "MAIL without a client certificate")


def refusal_untrusted_cert(ctx: Context, log: Log) -> Verdict:
    cert = self_signed(ctx.scratch)
    with Smtp(ctx.target, log) as s:
        try:
            s.starttls(cert)
            r = s.cmd("MAIL", f"FROM:<{ctx.target.sender}>")
        except (ssl.SSLError, smtplib.SMTPException, OSError) as e:
            log.note(f"TLS handshake or session failed: {type(e).__name__}")
            return _pass("a certificate outside IGC-Sante ends the TLS handshake")
        if r.code >= 500:
            return _pass(f"a certificate outside IGC-Sante is refused at MAIL: {r}")
        return _fail(f"a self-signed client certificate was accepted: {r}")


def refusal_sender_not_listed(ctx: Context, log: Log) -> Verdict:
    with professional(ctx.target, log) as s:
        return _expect(s.cmd("MAIL", "FROM:<kit@conformance-kit-unlisted.mssante.fr>"), 550, "5.7.1",
                       "a sender domain the trust list does not give this certificate")


def refusal_oversize(ctx: Context, log: Log) -> Verdict:
    with professional(ctx.target, log) as s:
        limit = s.s.esmtp_features.get("size", "")
        if not limit.strip().isdigit() or int(limit) == 0:
            return _skip("the deployment announces no SIZE limit (RFC 1870): the kit sends no 25 MB message")
        return _expect(s.cmd("MAIL", f"FROM:<{ctx.target.sender}> SIZE={int(limit) + 1}"), 552, "5.3.4",
                       f"MAIL with SIZE={int(limit) + 1}")


EXECUTABLE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 240 + b"PE\x00\x00"


def refusal_forbidden_attachment(ctx: Context, log: Log) -> Verdict:
    sender = ctx.target.tagged(f"exe-{token()}")
    raw, _ = _msg(ctx, sender, "Compte rendu", attachments=[(EXECUTABLE, "application/pdf", "compte-rendu.pdf")])
    return _expect(send_as_professional(ctx.target, log, sender, raw), 554, "5.6.1",
                   "an executable declared as a PDF")


def refusal_bare_lf(ctx: Context, log: Log) -> Verdict:
    # SMTP smuggling: a bare LF "end of data" hides a second message (RFC 5321 §2.3.8)
    sender = ctx.target.tagged(f"lf-{token()}")
    raw, mid = _msg(ctx, sender, "Bonjour")
    hidden = (f"\n.\nMAIL FROM:<{sender}>\r\nRCPT TO:<{ctx.target.patient_address}>\r\nDATA\r\n"
              "Subject: smuggled\r\n\r\nsmuggled\r\n").encode()
    with professional(ctx.target, log) as s:
        r = s.cmd("MAIL", f"FROM:<{sender}>")
        if r.code == 250:
            r = s.cmd("RCPT", f"TO:<{ctx.target.patient_address}>")
        if r.code != 250:
            raise KitError(f"the envelope was refused before DATA: {r}")
        r = s.data(raw.rstrip(b"\r\n") + hidden + b"\r\n.\r\n", dot_stuff=False)
    verdict = _expect(r, 500, "5.5.2", "DATA holding a bare LF")
    if verdict[0] is Status.PASS and _needs_patient(ctx) is None:
        with Imap(ctx.target, log) as imap:
            if imap.search("INBOX", "HEADER", "Message-ID", mid):
                return _fail("refused with 500 5.5.2, yet the message is in the patient's INBOX")
        return _pass(f"{verdict[1]}; nothing stored")
    return verdict


# ---- conversations, through submission and IMAP as the patient ------------------------

def _pro_writes(ctx: Context, log: Log, sender: str, subject: str = "Compte rendu",
                headers: dict[str, str] | None = None) -> str:
    raw, mid = _msg(ctx, sender, subject, headers=headers)
    r = send_as_professional(ctx.target, log, sender, raw)
    if r.code != 250:
        raise KitError(f"the professional's message was refused: {r}")
    return mid


def _patient_replies(ctx: Context, log: Log, to: str, in_reply_to: str | None, message_id: str | None = None) -> Reply:
    mid = message_id or f"<kit-reply-{token()}@{ctx.target.domain}>"
    extra = f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n" if in_reply_to else ""
    raw = (f"From: <{ctx.target.patient_address}>\r\nTo: <{to}>\r\nSubject: Re: Compte rendu\r\n"
           f"Message-ID: {mid}\r\n{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           "Merci docteur.\r\n").encode()
    with patient_submission(ctx.target, log) as s:
        r = s.cmd("MAIL", f"FROM:<{ctx.target.patient_address}>")
        if r.code != 250:
            return r
        r = s.cmd("RCPT", f"TO:<{to}>")
        if r.code != 250:
            return r
        return s.data(raw)


def conv_patient_first(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx)) is not None:
        return v
    r = _patient_replies(ctx, log, ctx.target.tagged(f"never-{token()}"), None)
    return _expect(r, 550, "5.7.1", "the patient writes first to a professional")


def conv_reply_after(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx)) is not None:
        return v
    pro = ctx.target.tagged(f"open-{token()}")
    mid = _pro_writes(ctx, log, pro)
    r = _patient_replies(ctx, log, pro, mid)
    if r.code != 250:
        return _fail(f"the patient's reply to a professional who wrote was refused: {r}")
    if ctx.listener is not None:
        got = ctx.listener.wait(_to(pro), ctx.target.wait)
        if got is None:
            return _fail(f"the reply was accepted ({r.code}) but never reached {pro} within {ctx.target.wait:.0f} s")
        return _pass("reply accepted (250) and delivered to the professional's server")
    return _pass("reply accepted (250); without --listen its delivery is not checked")


def conv_fin(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx)) is not None:
        return v
    pro = ctx.target.tagged(f"fin-{token()}")
    _pro_writes(ctx, log, pro)
    mid = _pro_writes(ctx, log, pro, "Resultats [FIN]")
    return _expect(_patient_replies(ctx, log, pro, mid), 550, "5.7.1", "a reply after [FIN]")


def conv_mes(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx)) is not None:
        return v
    pro = ctx.target.tagged(f"mes-{token()}")
    open_mid = _pro_writes(ctx, log, pro, "Premier message")
    closed_mid = _pro_writes(ctx, log, pro, "Second message", {"X-MSS-MES": "FIN"})
    refused = _patient_replies(ctx, log, pro, closed_mid)
    if refused.code != 550 or refused.status != "5.7.1":
        return _fail(f"a reply to the X-MSS-MES: FIN message: expected 550 5.7.1, got {refused}")
    other = _patient_replies(ctx, log, pro, open_mid)
    if other.code != 250:
        return _fail(f"X-MSS-MES: FIN closed more than its message: a reply to the other one got {other}")
    return _pass("the reply to the X-MSS-MES: FIN message is refused (550 5.7.1), the other thread stays open")


def conv_second_sender(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx)) is not None:
        return v
    if ctx.target.second_sender is None:
        return _skip("needs a second professional address (--second-sender)")
    first = ctx.target.tagged(f"one-{token()}")
    second = ctx.target.tagged(f"two-{token()}", ctx.target.second_sender)
    mid2 = _pro_writes(ctx, log, second)
    _pro_writes(ctx, log, first)
    _pro_writes(ctx, log, first, "Fin du suivi [FIN]")
    r = _patient_replies(ctx, log, second, mid2)
    if r.code != 250:
        return _fail(f"one professional's [FIN] closed another's exchange: {r}")
    return _pass("[FIN] from one professional leaves another's exchange open (250)")


def conv_mdn(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx) or _needs_listen(ctx)) is not None:
        return v
    pro = ctx.target.tagged(f"mdn-{token()}")
    mid = _pro_writes(ctx, log, pro, "Merci de confirmer la lecture", {"Disposition-Notification-To": pro})
    with Imap(ctx.target, log) as imap:
        uids = imap.search("INBOX", "HEADER", "Message-ID", mid)
        if len(uids) != 1:
            return _fail(f"the message is not in the patient's INBOX once ({len(uids)} found)")
        imap.fetch(uids[0], "BODY[]")  # the first read: sets \Seen (RFC 3501 §6.4.5)
    got = ctx.listener.wait(_to(pro), ctx.target.wait)  # type: ignore[union-attr]
    if got is None:
        return _fail(f"no read receipt reached {pro} within {ctx.target.wait:.0f} s")
    m = _parse(got.content)
    log.note(f"received: Content-Type: {m.get('Content-Type')}")
    if m.get_content_type() != "multipart/report" or \
            (m.get_param("report-type") or "").lower() != "disposition-notification":
        return _fail(f"the receipt is not an RFC 8098 MDN: Content-Type {m.get('Content-Type')!r}")
    text = got.content.decode("utf-8", "replace").lower()
    if "displayed" not in text:
        return _fail("the MDN does not say 'displayed'")
    # RFC 8098 §2.1: one MDN, the first time; a second read sends none
    with Imap(ctx.target, log) as imap:
        imap.search("INBOX", "HEADER", "Message-ID", mid)
        imap.c.uid("STORE", uids[0], "-FLAGS", "(\\Seen)")
        log.sent(f"UID STORE {uids[0].decode()} -FLAGS (\\Seen), then UID FETCH BODY[] again")
        imap.fetch(uids[0], "BODY[]")
    again = ctx.listener.wait(lambda m: _to(pro)(m) and m is not got, ctx.target.quiet_wait)  # type: ignore[union-attr]
    if again is not None:
        return _fail("a second MDN came back when the patient read the message again")
    return _pass("one RFC 8098 MDN ('displayed') on first read, none on the next")


def conv_dsn(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx) or _needs_listen(ctx)) is not None:
        return v
    pro = ctx.target.tagged(f"{REFUSE_MARK[1:]}{token()}")
    mid = _pro_writes(ctx, log, pro)
    reply_id = f"<kit-dsn-{token()}@{ctx.target.domain}>"
    r = _patient_replies(ctx, log, pro, mid, reply_id)
    if r.code != 250:
        return _fail(f"the patient's reply was refused before it could bounce: {r}")
    deadline = time.monotonic() + ctx.target.wait
    with Imap(ctx.target, log) as imap:
        while time.monotonic() < deadline:
            for uid in imap.search("INBOX", "HEADER", "Content-Type", "delivery-status"):
                raw = imap.fetch(uid)
                if pro.encode() in raw or reply_id.encode() in raw:
                    m = _parse(raw)
                    if m.get_content_type() == "multipart/report":
                        return _pass("the refused reply came back as an RFC 3464 DSN in the patient's INBOX")
            time.sleep(2)
    return _fail(f"no DSN for the refused reply in the patient's INBOX within {ctx.target.wait:.0f} s")


# ---- delivery -------------------------------------------------------------------------

def _stored(ctx: Context, log: Log, mid: str) -> list[bytes]:
    with Imap(ctx.target, log) as imap:
        return [imap.fetch(uid) for uid in imap.search("INBOX", "HEADER", "Message-ID", mid)]


def delivery_once(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx)) is not None:
        return v
    pro = ctx.target.tagged(f"once-{token()}")
    mid = _pro_writes(ctx, log, pro)
    found = _stored(ctx, log, mid)
    return _pass("stored once in the patient's INBOX") if len(found) == 1 else \
        _fail(f"{len(found)} copies of the message in the patient's INBOX")


def delivery_auth_results(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx)) is not None:
        return v
    pro = ctx.target.tagged(f"ar-{token()}")
    mid = _pro_writes(ctx, log, pro, headers={"Authentication-Results": "forged.invalid; x-mssante-tls=pass"})
    found = _stored(ctx, log, mid)
    if len(found) != 1:
        return _fail(f"{len(found)} copies of the message in the patient's INBOX")
    fields = [str(v) for v in _parse(found[0]).get_all("Authentication-Results") or []]
    for f in fields:
        log.note(f"Authentication-Results: {' '.join(f.split())}")
    domain = pro.rpartition("@")[2]
    ours = [f for f in fields if f"smtp.mailfrom={domain}" in f or "tls" in f.lower()]
    ours = [f for f in ours if not f.strip().startswith("forged.invalid")]
    if not ours:
        return _fail("no Authentication-Results field of the deployment (RFC 8601) naming the TLS session "
                     "or smtp.mailfrom")
    return _pass("the deployment's Authentication-Results field (RFC 8601) names the session")


def delivery_xdm(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx)) is not None:
        return v
    pro = ctx.target.tagged(f"xdm-{token()}")
    cda = minimal_cda(ctx.target.patient)
    package = xdm_package([XdmDoc("DOC0001.XML", cda, "Compte rendu de test", "11490-0", ctx.target.patient)])
    raw, mid = _msg(ctx, pro, "Document pour votre dossier", attachments=[(package, "application/zip", "IHE_XDM.ZIP")],
                    headers={"X-MSS-CODECDA": "11490-0", "X-MSS-INS": "O"})
    r = send_as_professional(ctx.target, log, pro, raw)
    if r.code != 250:
        return _fail(f"a valid IHE_XDM package for the patient was refused: {r}")
    found = _stored(ctx, log, mid)
    if len(found) != 1:
        return _fail(f"{len(found)} copies of the message in the patient's INBOX")
    parts = [p for p in _parse(found[0]).walk() if p.get_filename() == "IHE_XDM.ZIP"]
    if not parts or parts[0].get_payload(decode=True) != package:
        return _fail("the stored message does not hold the package as sent")
    return _pass("the valid IHE_XDM package is accepted and stored intact")


def delivery_dossier(ctx: Context, log: Log) -> Verdict:
    if (v := _needs_patient(ctx)) is not None:
        return v
    if ctx.target.web is None:
        return _skip("needs the dossier listing of the deployment (--web URL of the patients' webmail): "
                     "filing is not visible over IMAP")
    pro = ctx.target.tagged(f"dossier-{token()}")
    title = f"Compte rendu du kit {token()}"
    cda = minimal_cda(ctx.target.patient, title)
    package = xdm_package([XdmDoc("DOC0001.XML", cda, title, "11490-0", ctx.target.patient)])
    raw, _ = _msg(ctx, pro, "Document pour votre dossier", attachments=[(package, "application/zip", "IHE_XDM.ZIP")],
                  headers={"X-MSS-CODECDA": "11490-0", "X-MSS-INS": "O"})
    r = send_as_professional(ctx.target, log, pro, raw)
    if r.code != 250:
        return _fail(f"a valid IHE_XDM package for the patient was refused: {r}")
    page = Webmail(ctx.target, log).get("/dossier")
    count = page.count(html.escape(title, quote=False))
    if count != 1:
        return _fail(f"the document {title!r} appears {count} times in the patient's dossier listing")
    return _pass("the IHE_XDM document is filed in the patient's dossier, once, under its METADATA.XML title")


CATALOGUE: tuple[Scenario, ...] = (
    Scenario("test_address.ack", "TEST in subject and body gets an acknowledgement marked Auto-Submitted: auto-replied",
             "autoreply", test_ack),
    Scenario("test_address.no_keyword", "no acknowledgement without the TEST keyword", "autoreply", test_no_keyword),
    Scenario("test_address.null_sender", "no acknowledgement to a null sender (RFC 3834)", "autoreply",
             test_null_sender),
    Scenario("refusal.unknown_ins", "an unknown INS gets 550 5.1.1", "unknown_mailbox", refusal_unknown_ins),
    Scenario("refusal.bad_ins_key", "a wrong INS key gets 501 5.1.3", "bad_ins", refusal_bad_key),
    Scenario("refusal.closed_mailbox", "an opposed or closed mailbox gets 550 5.2.1", "mailbox_disabled",
             refusal_closed),
    Scenario("refusal.relay", "a foreign domain gets 550 5.7.1 (no relay)", "relay_denied", refusal_relay),
    Scenario("refusal.no_starttls", "MAIL before STARTTLS gets 530 5.7.0", "starttls_required", refusal_no_starttls),
    Scenario("refusal.no_client_cert", "no client certificate: 530 5.7.0 (or the handshake fails)",
             "client_cert_required", refusal_no_client_cert),
    Scenario("refusal.untrusted_cert", "a certificate outside IGC-Sante is refused", "client_cert_required",
             refusal_untrusted_cert),
    Scenario("refusal.sender_not_listed", "a sender domain not listed with the certificate gets 550 5.7.1",
             "sender_not_trusted", refusal_sender_not_listed),
    Scenario("refusal.oversize", "a message over the SIZE limit gets 552 5.3.4", "message_too_big", refusal_oversize),
    Scenario("refusal.forbidden_attachment", "an executable attachment gets 554 5.6.1", "attachment_forbidden",
             refusal_forbidden_attachment),
    Scenario("refusal.bare_lf", "a bare-LF smuggling attempt gets 500 5.5.2", "bare_line_ending", refusal_bare_lf),
    Scenario("conversation.patient_first", "a patient cannot write first to a professional: 550 5.7.1",
             "professional_must_start", conv_patient_first),
    Scenario("conversation.reply_accepted", "the patient's reply is accepted after the professional wrote",
             "conversation", conv_reply_after),
    Scenario("conversation.fin", "after [FIN] the patient's reply is refused: 550 5.7.1", "exchange_closed", conv_fin),
    Scenario("conversation.mes_fin", "X-MSS-MES: FIN closes that message only", "message_closed", conv_mes),
    Scenario("conversation.second_sender", "[FIN] closes one professional's exchange, not another's",
             "exchange_closed", conv_second_sender),
    Scenario("conversation.mdn", "a requested read receipt (RFC 8098 MDN) on first read", "mdn", conv_mdn),
    Scenario("conversation.dsn", "a DSN (RFC 3464) when the professional's side refuses the reply", "dsn", conv_dsn),
    Scenario("delivery.stored_once", "an accepted message is stored once", "delivery", delivery_once),
    Scenario("delivery.authentication_results", "the MX adds its Authentication-Results (RFC 8601)",
             "authentication_results", delivery_auth_results),
    Scenario("delivery.xdm", "a valid IHE_XDM package is accepted and stored intact", "dossier", delivery_xdm),
    Scenario("delivery.dossier", "the documents of a valid IHE_XDM package are filed in the dossier", "dossier",
             delivery_dossier),
)


def run_one(scenario: Scenario, ctx: Context, group: str) -> Outcome:
    log = Log()
    started = time.monotonic()
    try:
        status, reason = scenario.run(ctx, log)
    except KitError as e:
        status, reason = Status.FAIL, str(e)
    except (OSError, smtplib.SMTPException, ssl.SSLError, EOFError, imaplib.IMAP4.error,
            http.client.HTTPException) as e:
        # the deployment closed, timed out or garbled: a failure of the scenario, said briefly
        status, reason = Status.FAIL, f"connection failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    except Exception as e:
        status, reason = Status.FAIL, f"the kit could not run this scenario ({type(e).__name__})"
    return Outcome(scenario.name, scenario.title, status, reason, scenario.rule, list(log),
                   time.monotonic() - started, group)
