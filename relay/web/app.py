"""The webmail's HTTPS server (issue 11): aiohttp, server-rendered Jinja2 pages.

Implementation notes:
- Every page goes through three middlewares, outermost first: `errors` (a French
  page with the right status for every refusal, never a traceback), `who` (the
  session, the person and the space: relay/web/context.py; no page without them
  except the login, static files and autoconfig), `csrf` (every POST carries its
  session's token, else 403 before the handler runs: nothing is done).
- Headers on every response, downloads and event streams included (on_response_prepare):
  CSP without inline script and with frame-ancestors 'none', Referrer-Policy
  no-referrer, HSTS, nosniff, no-store.
- No SQL here: the store, dossier_bridge, policy and relay/outbound/outgoing_mail.py do the work.
"""
from __future__ import annotations

import asyncio
import ssl
import time
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import structlog
from aiohttp import web

from policy.recipients import MailboxState
from relay.web.context import FORM, MULTIPART, WHO, Who
from relay.web.counts import FolderCounts
from relay.web.mailview import SummaryCache
from relay.web.viewcache import ViewCache
from relay.web.rows import RowCache
from relay.web.sessions import SessionStore, WebSession, same_token
from relay.web.shared import LOGIN_COOKIE, SESSION_COOKIE, Handler, client_ip

if TYPE_CHECKING:
    from relay.auth.login import Authenticator
    from relay.core.runtime import Runtime

log = structlog.get_logger("relay.web")
HERE = Path(__file__).parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
MAX_FORM = 256 * 1024  # urlencoded forms (a reply's text); uploads stream (pages_mail.py)

STATUS_TEXT = {
    400: ("Requête invalide", "La demande n'a pas pu être comprise."),
    403: ("Accès refusé", "Cette action n'a pas été effectuée : le formulaire a expiré ou ne vient pas de "
          "cette page. Rechargez la page puis recommencez."),
    404: ("Page introuvable", "Cette page, ce message ou ce document n'existe pas, ou vous n'y avez pas accès."),
    405: ("Action impossible", "Cette adresse ne s'utilise pas ainsi."),
    413: ("Envoi trop volumineux", "Le fichier ou le texte envoyé dépasse la taille autorisée."),
    429: ("Trop de tentatives", "Trop de tentatives : réessayez dans quelques minutes."),
    500: ("Erreur du service", "Une erreur est survenue ; rien n'a été perdu. Réessayez dans un instant."),
    503: ("Service indisponible", "Le service est momentanément indisponible. Réessayez dans un instant."),
}

try:
    PARIS: Any = zoneinfo.ZoneInfo("Europe/Paris")
except zoneinfo.ZoneInfoNotFoundError:  # no tz database: show UTC rather than fail
    import datetime as _dt
    PARIS = _dt.timezone.utc

MONTHS = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc.")


def french_date(when: Any) -> str:
    if when is None:
        return ""
    local = when.astimezone(PARIS)
    return f"{local.day} {MONTHS[local.month - 1]} {local.year} à {local.hour:02d}:{local.minute:02d}"


def french_size(n: int) -> str:
    if n < 1024:
        return f"{n} octets"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} Ko"
    return f"{n / 1024 / 1024:.1f} Mo".replace(".", ",")


class Web:
    """What the handlers share: the runtime, the authenticator, sessions, templates."""

    def __init__(self, rt: "Runtime", auth: "Authenticator",
                 ports: Callable[[], dict[str, int]] | None = None):
        assert rt.config.web is not None
        self.rt = rt
        self.auth = auth
        self.cfg = rt.config.web
        self.sessions = SessionStore(self.cfg.session_idle, self.cfg.session_max, self.cfg.max_sessions)
        self.summaries = SummaryCache()
        self.views = ViewCache()  # conversation views by sealed blob id
        self.rows = RowCache()
        self.counts = FolderCounts(rt.store.feed)
        self.ports = ports or (lambda: {})
        self.streams = 0  # open SSE connections, all sessions
        self.stopping = asyncio.Event()
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                      # templates change only with the code: no stat() per page
                                      auto_reload=False)
        self.env.filters["date"] = french_date
        self.env.filters["size"] = french_size

    @property
    def store(self) -> Any:
        return self.rt.store

    def render(self, request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
        who: Who | None = request.get(WHO)
        flash: list[str] = []
        if who is not None:
            flash, who.session.flash[:] = list(who.session.flash), []
        values.setdefault("title", "Connexion")
        html = self.env.get_template(template).render(who=who, csrf=who.session.csrf if who else "",
                                                      flash=flash, path=request.path, **values)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    def error_page(self, request: web.Request, status: int, message: str | None = None) -> web.Response:
        title, text = STATUS_TEXT.get(status, STATUS_TEXT[500] if status >= 500 else STATUS_TEXT[400])
        try:
            return self.render(request, "error.html", status=status, title=title, text=message or text)
        except Exception as e:  # a template bug must still give a clean page
            log.error("web.error_page_failed", error=type(e).__name__)
            return web.Response(text=f"{title}\n{text}\n", status=status, content_type="text/plain", charset="utf-8")

    # ---- sessions --------------------------------------------------------------------

    async def resolve(self, request: web.Request, session: WebSession) -> Who | None:
        """The person and space of a live session; None when the account may no longer
        log in (closed, opposed): the session ends."""
        ident = await self.store.web_identity(session.user_id)
        user = ident.user if ident is not None else None
        if ident is None or user is None or user.state is not MailboxState.ACTIVE:
            self.sessions.drop(session.id)
            return None
        wards = tuple(ident.wards)
        space = user
        if session.space_ins != user.ins:
            found = next((w for w in wards if w.ins == session.space_ins), None)
            if found is None:  # guardian removed meanwhile: back to one's own space
                session.space_ins = user.ins
                session.flash.append("Vous n'avez plus accès à cet espace : vous êtes revenu dans le vôtre.")
            else:
                space = found
        return Who(session, user, space, wards, client_ip(request), tuple(ident.pharmacies.get(space.id, ())))

    def set_session_cookie(self, response: web.StreamResponse, session: WebSession) -> None:
        response.set_cookie(SESSION_COOKIE, session.id, path="/", secure=True, httponly=True, samesite="Strict")

    def clear_session_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")

    async def audit(self, who: Who, action: str, detail: str) -> None:
        """Every view and download, like IMAP reads (DESIGN.md §4 "Durability and trace")."""
        await self.store.audit(who.space.id, who.actor, action, detail, who.ip)


def _is_public(request: web.Request) -> bool:
    if request.path.startswith("/static/"):  # style and script need no session
        return True
    route = request.match_info.route
    handler = getattr(route, "handler", None)
    return bool(getattr(handler, "public", False)) or route.resource is None or \
        (request.match_info.http_exception is not None)


def build_app(w: Web) -> web.Application:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return w.error_page(request, e.status)
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            raise
        except Exception as e:  # never a traceback to the browser (house rules)
            log.error("web.failed", error=type(e).__name__, path=request.path)
            return w.error_page(request, 500)

    @web.middleware
    async def who(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_public(request):
            return await handler(request)
        session = w.sessions.get(request.cookies.get(SESSION_COOKIE), touch=request.path != "/evenements")
        resolved = await w.resolve(request, session) if session is not None else None
        if resolved is None:
            if request.method != "GET":
                raise web.HTTPForbidden()
            expired = SESSION_COOKIE in request.cookies
            response = web.HTTPSeeOther("/?expiree=1" if expired else "/")
            w.clear_session_cookie(response)
            raise response
        request[WHO] = resolved
        return await handler(request)

    @web.middleware
    async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in ("GET", "HEAD"):
            return await handler(request)
        if request.path.startswith("/pro/"):  # bearer API (pro_api.py): no cookie, nothing to forge
            return await handler(request)
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        who_: Who | None = request.get(WHO)
        expected = who_.session.csrf if who_ is not None else request.cookies.get(LOGIN_COOKIE)
        if request.content_type == "multipart/form-data":
            # the token is the form's first field: checked before any file is read
            reader = await request.multipart()
            first = await reader.next()
            token = None
            if first is not None and getattr(first, "name", None) == "csrf":
                token = (await first.read(decode=True)).decode("ascii", "replace")[:100]  # type: ignore[union-attr]
            request[MULTIPART] = reader
        else:
            form = await request.post()
            token = form.get("csrf")  # type: ignore[assignment]
            request[FORM] = form
        if not expected or not isinstance(token, str) or not same_token(expected, token):
            log.info("web.csrf_refused", path=request.path)
            raise web.HTTPForbidden()
        return await handler(request)

    app = web.Application(middlewares=[errors, who, csrf], client_max_size=MAX_FORM)

    async def headers(request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h["Referrer-Policy"] = "no-referrer"
        h["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        h["X-Content-Type-Options"] = "nosniff"
        h.setdefault("X-Frame-Options", "DENY")
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), interest-cohort=()"
        if not request.path.startswith("/static/"):
            h.setdefault("Cache-Control", "no-store")

    app.on_response_prepare.append(headers)
    from relay.web import autoconfig, pages_account, pages_dossier, pages_mail
    for module in (pages_account, pages_mail, pages_dossier, autoconfig):
        module.routes(app, w)
    from relay.web import pages_pro, pro_api
    pro_api.routes(app, w)  # the professionals' JSON API (issue 18)
    pages_pro.routes(app, w)  # the patient's controls over it
    app.router.add_static("/static/", HERE / "static", name="static", append_version=False)
    return app


class WebServer:
    """The listener: HTTPS on web.listen with tls.cert (the clients' context)."""

    def __init__(self, rt: "Runtime", auth: "Authenticator", tls: ssl.SSLContext,
                 ports: Callable[[], dict[str, int]] | None = None):
        self.web = Web(rt, auth, ports)
        self.tls = tls
        self.app = build_app(self.web)
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.backfill: asyncio.Task[None] | None = None

    async def start(self) -> int:
        cfg = self.web.cfg
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.listen.host, cfg.listen.port, ssl_context=self.tls,
                           reuse_address=True)
        await site.start()
        server = site._server  # the bound port, when web.listen asks for port 0
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("daemon.listening", front="web", address=f"{cfg.listen.host}:{self.port}")
        self.backfill = asyncio.create_task(self._fill_thread_index(), name="web-thread-backfill")
        return self.port

    async def _fill_thread_index(self) -> None:
        """Messages stored before migration 0011 get their thread key (mailbox_store/
        thread.py) in the background: until then a conversation shows fewer of them."""
        try:
            filled = await self.web.store.backfill_thread_keys()
            if filled:
                log.info("web.thread_index_filled", messages=filled)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # retried at the next start; the pages work meanwhile
            log.error("web.thread_index_failed", error=type(e).__name__)

    async def stop(self) -> None:
        self.web.stopping.set()  # event streams end
        self.web.counts.close()
        if self.backfill is not None:
            self.backfill.cancel()
            await asyncio.gather(self.backfill, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()


def now() -> float:
    return time.monotonic()
