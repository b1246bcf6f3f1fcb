"""Submission for patients (RFC 6409) on 2587 (STARTTLS) and 2465 (implicit TLS,
RFC 8314): aiosmtpd's engine with our handler, which asks policy for every decision.

Implementation notes:
- AUTH PLAIN and LOGIN (RFC 4616, RFC 4954) only after TLS; the password check is
  relay/auth/login.py's (argon2id in its own pool, throttled per account and source network,
  and per source network), the same as IMAP. aiosmtpd's authenticator hook is
  synchronous, so our auth_* methods decode the exchange, then verify asynchronously.
  PLAIN is decoded here, not by aiosmtpd, which drops the authorization identity: one
  naming anyone but the login is refused, as IMAP does.
- A patient sends only as themselves or as a child they represent (MAIL FROM and the
  From header): else 553 5.7.1.
- RCPT asks policy/conversation.py with the store's facts (correspondent open or
  closed, pharmacy): 550 5.7.1 with the rule in words. The reply-to-a-FIN-message
  rule needs the message's In-Reply-To/References, so DATA asks again with them.
- Attachments: the allow-list of the MX, 5 MB per file (DESIGN.md §4).
- 250 after DATA means: kept in the sender's Sent folder and queued, one transaction.
  DATA, its deadline, the header limits and the answer to unexpected errors are the
  MX's (engine.py); a store that cannot write: 452 4.3.1 when space is the cause.
"""
from __future__ import annotations

import binascii
from base64 import b64decode
from typing import TYPE_CHECKING, Any

import structlog
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax
from prometheus_client import Counter

from mailbox_store.store import MailboxInfo
from policy.conversation import normalise_address
from policy.decisions import AUTH_UNAVAILABLE, SHUTTING_DOWN, STORE_FULL, TOO_MANY_RECIPIENTS, Decision
from relay.auth.login import login_to_ins
from relay.outbound.outgoing_mail import recipient_decision, submit_message
from relay.smtp.engine import RelaySMTP
from relay.core.storefaults import free_space

if TYPE_CHECKING:
    from relay.auth.login import AuthResult as LoginResult, Authenticator
    from relay.core.runtime import Runtime

log = structlog.get_logger("relay.submission")
MESSAGES = Counter("mssante_submission_messages_total", "Messages submitted by patients, by result and rule",
                   ["result", "code", "rule"])
NOT_YOUR_ADDRESS = Decision(553, "5.7.1", "Vous ne pouvez ecrire qu'en votre nom ou celui d'un enfant que vous "
                            "representez", "You may only send as yourself or as a child you represent",
                            "sender_not_owned")
# RFC 4954 §6: 535 5.7.8 is "invalid or insufficient authentication credentials"; the
# RFC has no code of its own for an authorization identity the client may not assume,
# and RFC 4422 §3.4.1 makes that an authentication failure.
AUTH_INVALID = "535 5.7.8 Identifiants refuses / Authentication credentials invalid"
AUTHZID_REFUSED = ("535 5.7.8 Identite d'autorisation refusee, utilisez votre propre identifiant / "
                   "Authorization identity not permitted, use your own login")


def auth_reply(outcome: "LoginResult") -> str:
    """The reply to an AUTH whose check did not log the patient in."""
    if outcome.reason == "throttled":
        n = outcome.retry_after
        return (f"454 4.7.0 Trop d'echecs depuis votre reseau, reessayez dans {n} s / "
                f"Too many failed attempts from your network, retry in {n} s")
    if outcome.reason == "unavailable":
        return AUTH_UNAVAILABLE.smtp()  # RFC 4954 §6: temporary, the client may retry
    return AUTH_INVALID


NO_VALID_RECIPIENTS = Decision(554, "5.5.1", "Aucun destinataire valide", "No valid recipients", "no_recipients")


class SubmissionSMTP(RelaySMTP):
    def __init__(self, *args: Any, runtime: "Runtime", authenticator: "Authenticator", **kwargs: Any):
        # decode the exchange only; the real check is asynchronous (auth_PLAIN/LOGIN)
        super().__init__(*args, authenticator=lambda *a: AuthResult(success=True, auth_data=a[-1]), **kwargs)
        self.runtime = runtime
        self.checker = authenticator

    def connection_made(self, transport: Any) -> None:
        implicit = self._original_transport is None and transport.get_extra_info("sslcontext") is not None
        super().connection_made(transport)
        if implicit and self.session is not None:
            # RFC 8314 implicit TLS (port 465): aiosmtpd knows TLS only from its own
            # STARTTLS, and would neither offer AUTH nor accept MAIL; the session is
            # encrypted from the first byte, so tell it so.
            self._tls_protocol = transport
            self.session.ssl = {"ssl_object": transport.get_extra_info("ssl_object")}

    async def _verify(self, result: AuthResult) -> AuthResult:
        if not result.success or not isinstance(result.auth_data, LoginPassword):
            return result
        creds: LoginPassword = result.auth_data
        peer = self.session.peer[0] if self.session is not None and self.session.peer else ""
        outcome = await self.checker.login(creds.login.decode("utf-8", "replace"),
                                           creds.password.decode("utf-8", "replace"), peer, "submission")
        if outcome.mailbox is None:
            return AuthResult(success=False, handled=False, message=auth_reply(outcome))
        return AuthResult(success=True, auth_data=outcome.mailbox)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        # RFC 4616 §2: message = [authzid] NUL authcid NUL passwd
        if len(args) == 1:  # RFC 4954 §4: no initial response, ask for it
            response = await self.challenge_auth("")
            if response is MISSING:  # cancelled or not base64: already answered
                return AuthResult(success=False, handled=True)
        else:
            try:
                response = b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(response, bytes)
        try:
            authzid, login, password = response.split(b"\x00")
        except ValueError:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        if authzid and not self._same_identity(authzid, login):
            # decided before the password is checked: nothing learnt, nothing charged
            log.info("submission.authzid_refused", peer=self.session.peer[0] if self.session
                     and self.session.peer else None)
            return AuthResult(success=False, handled=False, message=AUTHZID_REFUSED)
        return await self._verify(AuthResult(success=True, auth_data=LoginPassword(login, password)))

    def _same_identity(self, authzid: bytes, login: bytes) -> bool:
        """An authorization identity is allowed only when it names the login itself
        (its address or bare INS, in any case)."""
        if authzid == login:
            return True
        domain = self.runtime.config.domain
        ins = login_to_ins(authzid.decode("utf-8", "replace"), domain)
        return ins is not None and ins == login_to_ins(login.decode("utf-8", "replace"), domain)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        result = await super().auth_LOGIN(_, args)
        if not result.success:  # cancelled ("*") or not base64: aiosmtpd already answered 501
            return AuthResult(success=False, handled=True)
        return await self._verify(result)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        try:
            await super().smtp_AUTH(arg)
        except ConnectionError:
            raise
        except Exception as e:  # the store could not answer: no exception text to the client (RFC 4954 §6)
            log.error("submission.auth_failed", error=type(e).__name__)
            await self.push(AUTH_UNAVAILABLE.smtp())


class SubmissionHandler:
    def __init__(self, runtime: "Runtime"):
        self.rt = runtime

    def refuse(self, d: Decision, stage: str, session: Session, **kw: Any) -> str:
        log.info("submission.refused", code=d.code, status=d.status, rule=d.rule, stage=stage,
                 peer=session.peer[0] if session.peer else None, **kw)
        MESSAGES.labels("refused", str(d.code), d.rule).inc()
        return d.smtp()

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return responses[:1] + ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"] + responses[1:]

    async def _sender(self, user: MailboxInfo, address: str) -> MailboxInfo | None:
        """The mailbox the authenticated patient may send as: their own, or a ward's."""
        norm = normalise_address(address)
        if norm is None or norm.rpartition("@")[2] != self.rt.config.domain:
            return None
        local = norm.rpartition("@")[0].upper()
        if local == user.ins:
            return user
        return next((w for w in await self.rt.store.wards(user.id) if w.ins == local), None)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.rt.stopping:
            return self.refuse(SHUTTING_DOWN, "mail", session)
        if free_space(self.rt.config).low:  # RFC 3463 X.3.1: known before the data is sent
            return self.refuse(STORE_FULL, "mail", session)
        user = session.auth_data
        assert isinstance(user, MailboxInfo)  # auth_required: aiosmtpd refused MAIL before AUTH
        sender = await self._sender(user, address)
        if sender is None:
            return self.refuse(NOT_YOUR_ADDRESS, "mail", session, ins_hash=self.rt.master.pseudonym(user.ins))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.sender_mailbox = sender  # type: ignore[attr-defined]
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.rt.config.max_recipients:
            return self.refuse(TOO_MANY_RECIPIENTS, "rcpt", session)
        sender: MailboxInfo = envelope.sender_mailbox  # type: ignore[attr-defined]
        decision = await self._decide(sender, address, (), ())
        if not decision.accepted:
            return self.refuse(decision, "rcpt", session, ins_hash=self.rt.master.pseudonym(sender.ins))
        rcpt = normalise_address(address) or address
        if rcpt in envelope.rcpt_tos:  # the same person twice: one copy (RFC 5321 §3.3 allows)
            return "250 2.1.5 OK (doublon / duplicate recipient)"
        envelope.rcpt_tos.append(rcpt)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def _decide(self, sender: MailboxInfo, address: str, in_reply_to: tuple[str, ...],
                      references: tuple[str, ...]) -> Decision:
        return await recipient_decision(self.rt, sender, address, in_reply_to, references)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        sender: MailboxInfo = envelope.sender_mailbox  # type: ignore[attr-defined]
        ins_hash = self.rt.master.pseudonym(sender.ins)
        # the checks and the commit are shared with the webmail (relay/outbound/outgoing_mail.py)
        done = await submit_message(self.rt, sender, raw, envelope.mail_from or "", envelope.rcpt_tos)
        if isinstance(done, Decision):
            return self.refuse(done, "data", session, ins_hash=ins_hash)
        MESSAGES.labels("accepted", "250", "ok").inc()
        log.info("submission.queued", envelope_id=done.envelope_id, ins_hash=ins_hash,
                 recipients=len(envelope.rcpt_tos), size=len(raw))
        return f"250 2.0.0 OK: en file d'attente / queued as {done.envelope_id}"



