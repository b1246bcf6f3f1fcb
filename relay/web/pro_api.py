"""The professionals' API (issue 18 §3): JSON over HTTPS on the webmail's port. The
paths, fields and error codes are a contract: `mssante-relay pro dossier` and outside
software drive them exactly as README.md writes them.

Implementation notes:
- Login is a challenge-response with the CPS card: POST /pro/challenge gives a nonce
  (single use, 120 s), POST /pro/session takes the card's authentication certificate
  and its RSASSA-PKCS1-v1_5/SHA-256 signature of the nonce (certs/professional.py).
  The nonce is spent by any attempt, good or bad: a replay is always `unknown_nonce`.
- Tokens are opaque (256 random bits) and kept here, server-side, like webmail
  sessions: they end after 15 minutes without a request; at most MAX_TOKENS are held
  (the least recently used dropped), and as many nonces.
- Every request re-reads the patient's decisions from the store and asks
  policy.dossier_access: a block, a hidden document or emergency switched off applies
  at the professional's next request, live tokens included.
- Bearer API: no cookie, hence outside the webmail's session and CSRF middlewares
  (app.py lets /pro/ through: `public` handlers, no CSRF for a request that carries no
  ambient credential); the TLS and the security headers are the webmail's.
- Errors are `{"error": CODE}` with the status the contract gives; never a traceback.
- No SQL here: the store (mailbox_store/pro_access.py), dossier_bridge and policy do it.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from certs.professional import (ProfessionalRefused, load_anchors, load_crls, verify_certificate,
                                verify_signature)
from dossier_bridge.categories import category
from dossier_bridge.dossier import DocumentUnreadable, read_document
from mailbox_store.documents import NoSuchDocument
from mailbox_store.errors import StoreError
from mailbox_store.pro_access import ProBlocked, pro_actor
from mailbox_store.store import MailboxInfo
from policy.dossier_access import DocumentFacts, dossier_access, idnat_or_none, mode_for
from policy.ins import InsError, parse_ins
from policy.recipients import MailboxState
from relay.pro.notice import REASON_MAX, tell_patient
from relay.web.shared import client_ip, public

if TYPE_CHECKING:
    from relay.web.app import Web

log = structlog.get_logger("relay.web.pro")

NONCE_TTL = 120.0  # seconds (the contract's expires_in)
TOKEN_IDLE = 900.0  # 15 minutes without a request
EMERGENCY_TTL = 3600.0  # one hour of emergency access per token and patient
MAX_TOKENS = 10_000
MAX_NONCES = 10_000
MAX_BODY = 64 * 1024  # a certificate chain and a signature
VERIFYING = 4  # certificate checks at once (RSA, file reads: in threads): a login flood queues
PRO_SESSIONS: web.AppKey["ProSessions"] = web.AppKey("pro_sessions")
_DOC_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class ProToken:
    idnat: str
    name: str
    seen: float
    emergencies: dict[str, float] = field(default_factory=dict)  # INS -> end of emergency access


class ProSessions:
    """Nonces and tokens, in memory, bounded in count and time."""

    def __init__(self, idle: float = TOKEN_IDLE, nonce_ttl: float = NONCE_TTL):
        self.idle = idle
        self.nonce_ttl = nonce_ttl
        self._nonces: OrderedDict[str, float] = OrderedDict()  # nonce -> expiry
        self._tokens: OrderedDict[str, ProToken] = OrderedDict()

    def challenge(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        nonce = secrets.token_urlsafe(32)  # base64url of 32 random bytes
        self._nonces[nonce] = now + self.nonce_ttl
        while len(self._nonces) > MAX_NONCES:
            self._nonces.popitem(last=False)
        return nonce

    def spend(self, nonce: str, now: float | None = None) -> bool:
        """Whether the nonce was issued, unused and unexpired; it is gone either way."""
        now = time.monotonic() if now is None else now
        expiry = self._nonces.pop(nonce, None)
        return expiry is not None and now <= expiry

    def open(self, idnat: str, name: str, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        token = secrets.token_urlsafe(32)
        self._tokens[token] = ProToken(idnat, name, now)
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)
        return token

    def get(self, token: str | None, now: float | None = None) -> ProToken | None:
        if not token:
            return None
        now = time.monotonic() if now is None else now
        t = self._tokens.get(token)
        if t is None:
            return None
        if now - t.seen > self.idle:
            del self._tokens[token]
            return None
        t.seen = now
        self._tokens.move_to_end(token)
        return t


def _error(status: int, code: str) -> web.Response:
    return web.json_response({"error": code}, status=status)


async def _json(request: web.Request) -> dict[str, Any] | None:
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    try:
        body = await request.read()  # bounded by the app's client_max_size too (app.MAX_FORM)
        if len(body) > MAX_BODY:
            return None
        data = json.loads(body.decode("utf-8")) if body else {}
    except (ValueError, UnicodeDecodeError, web.HTTPRequestEntityTooLarge):
        return None
    return data if isinstance(data, dict) else None


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None  # RFC 6750 §2.1


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def routes(app: web.Application, w: Web) -> None:
    rt = w.rt
    store = w.store
    pros = ProSessions()
    app[PRO_SESSIONS] = pros
    verifying = asyncio.Semaphore(VERIFYING)

    def config_paths() -> tuple[Any, tuple[Any, ...]]:
        cfg = rt.config
        return cfg.pro_trust_anchors or cfg.trust_anchors, cfg.crls if cfg.pro_crls is None else cfg.pro_crls

    def guarded(handler: Handler) -> Handler:
        """Never a traceback nor an HTML page to an API client."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("pro.failed", error=type(e).__name__, path=request.path)
                # storage failing: 503 like /healthz (DESIGN.md §6 "Faults answer in codes")
                return _error(503 if isinstance(e, (StoreError, SQLAlchemyError, OSError)) else 500,
                              "unavailable" if isinstance(e, (StoreError, SQLAlchemyError, OSError)) else "internal")
        return public(wrapped)

    async def challenge(request: web.Request) -> web.StreamResponse:
        return web.json_response({"nonce": pros.challenge(), "expires_in": int(NONCE_TTL)})

    async def session(request: web.Request) -> web.StreamResponse:
        data = await _json(request)
        if data is None or not all(isinstance(data.get(k), str) for k in ("nonce", "certificate", "signature")):
            return _error(400, "bad_request")
        if not pros.spend(data["nonce"]):
            return _error(401, "unknown_nonce")
        try:
            signature = base64.b64decode(data["signature"], validate=True)
        except (binascii.Error, ValueError):
            return _error(401, "bad_signature")
        anchors_path, crl_paths = config_paths()

        def check() -> tuple[str, str]:
            try:
                anchors = load_anchors(anchors_path)
                crls = load_crls(crl_paths)
            except (OSError, ValueError) as e:
                log.error("pro.trust_unreadable", error=type(e).__name__)
                raise ProfessionalRefused("untrusted_certificate", "trust anchors or CRLs unreadable") from None
            cert, who = verify_certificate(data["certificate"].encode("utf-8", "replace"), anchors, crls)
            verify_signature(cert, data["nonce"].encode("ascii", "replace"), signature)
            return who.idnat, who.name

        try:
            async with verifying:
                idnat, name = await asyncio.to_thread(check)  # RSA and file reads off the event loop
        except ProfessionalRefused as e:
            log.info("pro.session_refused", code=e.code, source=client_ip(request))
            return _error(401, e.code)
        token = pros.open(idnat, name)
        log.info("pro.session", idnat=idnat, source=client_ip(request))
        return web.json_response({"token": token, "idnat": idnat, "name": name})

    async def caller(request: web.Request) -> ProToken | web.Response:
        token = pros.get(_bearer(request))
        return token if token is not None else _error(401, "unauthenticated")

    async def patient(request: web.Request) -> MailboxInfo | web.Response:
        try:
            ins = parse_ins(request.match_info["ins"]).value
        except InsError:
            return _error(404, "unknown_patient")
        mailbox = await store.get_mailbox(ins)
        if mailbox is None or mailbox.state is not MailboxState.ACTIVE:
            return _error(404, "unknown_patient")
        return mailbox

    async def resolve(request: web.Request) -> tuple[ProToken, MailboxInfo] | web.Response:
        token = await caller(request)
        if isinstance(token, web.Response):
            return token
        mailbox = await patient(request)
        if isinstance(mailbox, web.Response):
            return mailbox
        return token, mailbox

    def emergency_active(token: ProToken, ins: str) -> bool:
        end = token.emergencies.get(ins)
        if end is not None and time.monotonic() > end:
            del token.emergencies[ins]
            return False
        return end is not None

    async def visible(token: ProToken, mailbox: MailboxInfo) -> tuple[Any, list[Any]] | web.Response:
        """(the access decision, the stored documents), or the 403 refusal."""
        rules = await store.pro_rules(mailbox)
        mode = mode_for(rules, token.idnat, emergency_active(token, mailbox.ins))
        docs = await store.documents(mailbox)
        facts = [DocumentFacts(d.id, idnat_or_none((d.meta.get("author") or {}).get("id"))) for d in docs]
        access = dossier_access(rules, token.idnat, mode, facts)
        if access.error is not None:
            return _error(403, access.error)
        return (access, mode), docs

    async def first_access(token: ProToken, mailbox: MailboxInfo, action: str, detail: str,
                           request: web.Request) -> None:
        if await store.pro_accessed(mailbox, token.idnat, token.name, action, detail, client_ip(request)):
            await tell_patient(rt, mailbox, token.idnat, token.name, emergency=False)

    async def access(request: web.Request) -> web.StreamResponse:
        got = await resolve(request)
        if isinstance(got, web.Response):
            return got
        token, mailbox = got
        data = await _json(request)
        if data is None or data.get("consent") is not True:
            return _error(400, "consent_required")
        try:
            first = await store.pro_consent(mailbox, token.idnat, token.name, client_ip(request))
        except ProBlocked:
            return _error(403, "blocked")
        if first:
            await tell_patient(rt, mailbox, token.idnat, token.name, emergency=False)
        return web.json_response({"authorised": True, "idnat": token.idnat})

    def _document_json(d: Any) -> dict[str, Any]:
        meta = d.meta
        author = meta.get("author") or {}
        return {"id": d.id, "title": meta.get("title") or meta.get("filename") or "Document",
                "class": meta.get("category") or category(meta),
                "author": {"idnat": idnat_or_none(author.get("id")), "name": author.get("name")},
                "date": meta.get("date") or d.filed_at.isoformat(),
                "size": d.size, "mime": meta.get("mime_type") or "application/octet-stream"}

    async def documents(request: web.Request) -> web.StreamResponse:
        got = await resolve(request)
        if isinstance(got, web.Response):
            return got
        token, mailbox = got
        seen = await visible(token, mailbox)
        if isinstance(seen, web.Response):
            return seen
        (decision, mode), docs = seen
        await first_access(token, mailbox, "pro.list", "urgence" if mode.value == "emergency" else "", request)
        return web.json_response({"documents": [_document_json(d) for d in docs if d.id in decision.visible]})

    async def document(request: web.Request) -> web.StreamResponse:
        got = await resolve(request)
        if isinstance(got, web.Response):
            return got
        token, mailbox = got
        seen = await visible(token, mailbox)
        if isinstance(seen, web.Response):
            return seen
        (decision, _mode), _docs = seen
        doc_id = request.match_info["doc"]
        if not _DOC_ID.match(doc_id) or doc_id not in decision.visible:
            return _error(404, "unknown_document")  # hidden, foreign or absent: all alike
        # the read itself is audited by the store ("dossier.download" by this professional)
        if await store.pro_accessed(mailbox, token.idnat, token.name, "", "", client_ip(request)):
            await tell_patient(rt, mailbox, token.idnat, token.name, emergency=False)
        try:
            doc, content = await read_document(store, mailbox, doc_id, pro_actor(token.idnat, token.name),
                                               client_ip(request), rt.config.attachments)
        except NoSuchDocument:
            return _error(404, "unknown_document")
        except DocumentUnreadable:
            return _error(500, "document_unreadable")
        mime = str(doc.meta.get("mime_type") or "application/octet-stream")
        resp = web.Response(body=content, content_type=mime)
        resp.headers["Content-Disposition"] = "attachment"
        return resp

    async def emergency(request: web.Request) -> web.StreamResponse:
        got = await resolve(request)
        if isinstance(got, web.Response):
            return got
        token, mailbox = got
        data = await _json(request)
        reason = data.get("reason") if data is not None else None
        if not isinstance(reason, str) or not reason.strip():
            return _error(400, "reason_required")
        reason = reason.strip()[:REASON_MAX]
        rules = await store.pro_rules(mailbox)
        if token.idnat in rules.blocked:
            return _error(403, "blocked")
        if not rules.emergency_enabled:
            return _error(403, "emergency_disabled")
        token.emergencies[mailbox.ins] = time.monotonic() + EMERGENCY_TTL
        # the reason may be health content: it goes to the patient's (sealed) INBOX, not the log
        await store.pro_accessed(mailbox, token.idnat, token.name, "pro.emergency", "", client_ip(request))
        await tell_patient(rt, mailbox, token.idnat, token.name, emergency=True, reason=reason)
        until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=EMERGENCY_TTL)
        return web.json_response({"emergency": True, "expires_in": int(EMERGENCY_TTL),
                                  "until": until.isoformat(timespec="seconds")})

    r = app.router
    r.add_post("/pro/challenge", guarded(challenge))
    r.add_post("/pro/session", guarded(session))
    r.add_post("/pro/patients/{ins}/access", guarded(access))
    r.add_get("/pro/patients/{ins}/documents", guarded(documents))
    r.add_get("/pro/patients/{ins}/documents/{doc}", guarded(document))
    r.add_post("/pro/patients/{ins}/emergency", guarded(emergency))
