"""Login, logout, the space selector, "Historique des accès" and "Paramètres"."""
from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from relay.ops.export import ExportError, export
from relay.ops.lifecycle import AlreadyClosed, close_mailbox
from relay.web.shared import LOGIN_COOKIE, SESSION_COOKIE, public
from relay.web.context import FORM, WHO, Who

if TYPE_CHECKING:
    from relay.web.app import Web

log = structlog.get_logger("relay.web")
AUDIT_PAGE = 50
MIN_PASSWORD = 12
_EMAIL = re.compile(r"^[^@\s<>\"(),;:]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
REFUSED = "Identifiant ou mot de passe incorrect."
THROTTLED = "Trop de tentatives : réessayez dans quelques minutes."


def _login_token(request: web.Request) -> str:
    token = request.cookies.get(LOGIN_COOKIE)
    return token if token and len(token) == 43 else secrets.token_urlsafe(32)


def _login_page(w: Web, request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    token = _login_token(request)
    notice = "Votre session a expiré : reconnectez-vous." if request.query.get("expiree") else None
    resp = w.render(request, "login.html", status=status, login_csrf=token, error=error, notice=notice)
    resp.set_cookie(LOGIN_COOKIE, token, path="/", secure=True, httponly=True, samesite="Strict")
    return resp


def routes(app: web.Application, w: Web) -> None:
    @public
    async def login_form(request: web.Request) -> web.StreamResponse:
        if w.sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
            raise web.HTTPSeeOther("/messagerie")
        return _login_page(w, request)

    @public
    async def login(request: web.Request) -> web.StreamResponse:
        form = request[FORM]
        ident = str(form.get("identifiant", "")).strip()[:320]
        password = str(form.get("mot_de_passe", ""))[:1024]
        ip = _ip(request)
        outcome = await w.auth.login(ident, password, ip, "web")
        if outcome.mailbox is None:
            # the same words whatever the reason: never tell whether an account exists
            return _login_page(w, request, THROTTLED if outcome.reason == "throttled" else REFUSED, status=401)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            w.sessions.drop(old)  # rotation: nothing known before login survives it
        session = w.sessions.create(outcome.mailbox.id, outcome.mailbox.ins)
        resp = web.HTTPSeeOther("/messagerie")
        w.set_session_cookie(resp, session)
        resp.del_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        raise resp

    async def logout(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        w.sessions.drop(who.session.id)
        resp = web.HTTPSeeOther("/")
        w.clear_session_cookie(resp)
        raise resp

    async def switch_space(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        wanted = str(request[FORM].get("espace", ""))
        if wanted == who.user.ins or any(c.ins == wanted for c in who.wards):
            who.session.space_ins = wanted
        else:
            raise web.HTTPNotFound()
        raise web.HTTPSeeOther("/messagerie")

    async def history(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        page = _page(request)
        got = await w.store.audit_page(who.space.id, (page - 1) * AUDIT_PAGE, AUDIT_PAGE)
        authors = await _document_authors(w, who, got.events)
        rows = [(e.at, describe(e.actor, e.action, e.detail, e.source, authors, who)) for e in got.events]
        pages = max(1, -(-got.total // AUDIT_PAGE))
        return w.render(request, "history.html", rows=rows, page=page, pages=pages, title="Historique des accès")

    async def settings(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        return w.render(request, "settings.html", title="Paramètres", notify=who.space.notify_email or "",
                        message=None, error=None)

    async def set_notify(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        address = str(request[FORM].get("adresse", "")).strip()
        if address and not _EMAIL.match(address):
            return w.render(request, "settings.html", status=400, title="Paramètres", notify=address, message=None,
                            error="Adresse de notification invalide : indiquez une adresse e-mail complète.")
        await w.store.set_notify_email(who.space.ins, address or None, actor=who.actor, source=who.ip)
        who.session.flash.append("Adresse de notification enregistrée." if address else
                                 "Notifications désactivées.")
        raise web.HTTPSeeOther("/parametres")

    async def change_password(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        form = request[FORM]
        current, new, again = (str(form.get(k, ""))[:1024] for k in ("actuel", "nouveau", "confirmation"))
        error = None
        if len(new) < MIN_PASSWORD:
            error = f"Le nouveau mot de passe doit compter au moins {MIN_PASSWORD} caractères."
        elif new != again:
            error = "Les deux saisies du nouveau mot de passe diffèrent."
        elif not (await w.auth.login(who.user.ins, current, who.ip, "web")).ok:
            error = "Mot de passe actuel incorrect."  # counted by the same throttle as logins
        if error:
            return w.render(request, "settings.html", status=400, title="Paramètres",
                            notify=who.space.notify_email or "", message=None, error=error)
        hashed = await w.auth.hash_password(new)  # the password pool (relay/auth/login.py)
        await w.store.set_password(who.user.ins, hashed, actor="patient", source=who.ip)
        # every other session of this account ends; this one gets a new id
        w.sessions.drop_user(who.user.id)
        session = w.sessions.create(who.user.id, who.user.ins)
        session.space_ins = who.session.space_ins
        session.flash.append("Mot de passe modifié. Vos autres connexions ont été fermées.")
        resp = web.HTTPSeeOther("/parametres")
        w.set_session_cookie(resp, session)
        raise resp

    async def export_data(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        tmp = Path(tempfile.mkdtemp(prefix="mssante-web-export-"))  # 0700
        try:
            target = tmp / "export.tar"
            done = await export(w.store, who.space.ins, target, limits=w.rt.config.attachments)
            await w.audit(who, "export", f"{done.messages} message(s), web download")
            resp = web.StreamResponse(headers={
                "Content-Type": "application/x-tar",
                "Content-Disposition": f'attachment; filename="mes-donnees-{who.space.ins}.tar"'})
            resp.content_length = target.stat().st_size
            await resp.prepare(request)
            with target.open("rb") as f:
                while chunk := await asyncio.to_thread(f.read, 256 * 1024):
                    await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # never leave the plaintext behind

    async def close_form(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        if not who.own:
            raise web.HTTPNotFound()
        return w.render(request, "close.html", title="Fermer mon espace", error=None,
                        years=w.rt.config.archive_retention_years)

    async def close(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        if not who.own:
            raise web.HTTPNotFound()
        password = str(request[FORM].get("mot_de_passe", ""))[:1024]
        years = w.rt.config.archive_retention_years
        if not (await w.auth.login(who.user.ins, password, who.ip, "web")).ok:
            return w.render(request, "close.html", status=400, title="Fermer mon espace", years=years,
                            error="Mot de passe incorrect : votre espace n'a pas été fermé.")
        try:
            await close_mailbox(w.store, w.rt.config, who.user.ins, actor="patient", source=f"web:{who.ip}"[:60])
        except (ExportError, AlreadyClosed) as e:
            log.error("web.close_failed", error=type(e).__name__)
            return w.render(request, "close.html", status=503, title="Fermer mon espace", years=years,
                            error="La fermeture n'a pas pu être faite (archive impossible) ; votre espace "
                                  "reste ouvert. Réessayez plus tard.")
        w.sessions.drop_user(who.user.id)
        # the session is gone: the page is a logged-out one (no space selector, no menu)
        request[WHO] = None
        resp = w.render(request, "closed.html", title="Espace fermé", years=years)
        w.clear_session_cookie(resp)
        return resp

    r = app.router
    r.add_get("/", login_form, name="login")
    r.add_post("/", login)
    r.add_post("/deconnexion", logout)
    r.add_post("/espace", switch_space)
    r.add_get("/historique", history)
    r.add_get("/parametres", settings)
    r.add_post("/parametres/notification", set_notify)
    r.add_post("/parametres/mot-de-passe", change_password)
    r.add_post("/parametres/export", export_data)
    r.add_get("/parametres/fermer", close_form)
    r.add_post("/parametres/fermer", close)


def _ip(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return peer[0] if peer else ""


def _page(request: web.Request) -> int:
    text = request.query.get("page", "1")
    return int(text) if text.isdigit() and 0 < int(text) < 1_000_000 else 1


async def _document_authors(w: Web, who: Who, events: list[Any]) -> dict[str, str]:
    """Document id -> its author's address, for "Document ajouté par ..." lines."""
    if not any(e.action == "dossier.filed" for e in events):
        return {}
    out = {}
    for d in await w.store.documents(who.space):
        author = d.meta.get("author") or {}
        out[d.id] = author.get("name") or author.get("address") or ""
    return out


def _who_did(actor: str, who: Who) -> str:
    if actor == "patient":
        return ""
    if actor.startswith("guardian:"):
        ins = actor.partition(":")[2]
        return " (par vous, représentant légal)" if ins == who.user.ins else " (par un représentant légal)"
    if actor.startswith("admin"):
        return " (par l'administration du service)"
    if actor.startswith("pro:"):  # "pro:<IdNat_PS> <name>" (mailbox_store/pro_access.py)
        idnat, _, name = actor[4:].partition(" ")
        return f" (par {name or 'un professionnel de santé'}, RPPS {idnat[1:]})"
    return ""


def describe(actor: str, action: str, detail: str, source: str, authors: dict[str, str], who: Who) -> str:
    """One audit event in plain French (issue 11: "Connexion depuis 127.0.0.1"...)."""
    by = _who_did(actor, who)
    where = f" depuis {source}" if source and not source.startswith("cli") else ""
    doc = detail.removeprefix("document ").strip()
    if action in ("pro.allow", "pro.block", "pro.unblock", "pro.attending") and detail[:1] == "8":
        return f"{_SAID_WITH_SOURCE[action]} (RPPS {detail[1:]}){where}{by}"  # detail: the IdNat_PS
    if action in _SAID_WITH_SOURCE:
        return f"{_SAID_WITH_SOURCE[action]}{where}{by}"
    if action == "dossier.filed":
        if actor == "mx":
            author = authors.get(doc)
            return f"Document ajouté par {author}" if author else "Document ajouté par un professionnel"
        return f"Document enregistré dans le dossier{where}{by}"
    if action == "dossier.not_filed":
        return "Un document reçu n'a pas pu être classé dans le dossier"
    if action == "notify_email":
        return f"Adresse de notification {'modifiée' if detail == 'set' else 'supprimée'}{where}{by}"
    if action in ("guardian.add", "guardian.remove"):
        return ("Ajout" if action.endswith("add") else "Retrait") + " d'un représentant légal" + by
    if action == "majority":
        return "Majorité : les représentants légaux n'ont plus accès" + by
    if action == "state":
        return f"État de l'espace : {_STATES.get(detail, detail)}{by}"
    if action == "activate":
        return "Activation de l'espace"
    if action == "mailbox.create":
        return f"Création de l'espace ({_STATES.get(detail.removeprefix('state '), detail)}){by}"
    if action.startswith("activation_code."):
        return "Code d'activation " + ("émis" if action.endswith("issued") else "refusé") + by
    if action.startswith("pharmacy."):
        return ("Pharmacie autorisée : " if action.endswith("allow") else "Pharmacie retirée : ") + detail
    if action == "close":
        return "Fermeture de l'espace" + by
    return f"{action}{where}{by}"


# Events said the same way: a phrase, then where from and by whom
_SAID_WITH_SOURCE = {
    "login": "Connexion",
    "message.read": "Lecture d'un message",
    "message.search": "Recherche dans les messages",
    "attachment.download": "Téléchargement d'une pièce jointe",
    "message.sent": "Envoi d'un message",
    "dossier.download": "Consultation d'un document du dossier",
    "dossier.delete": "Suppression d'un document du dossier",
    "export": "Export de vos données",
    "password": "Mot de passe modifié",
    "pro.consent": "Accès à votre dossier d'un professionnel de santé, avec votre consentement déclaré",
    "pro.list": "Consultation de la liste de vos documents par un professionnel de santé",
    "pro.emergency": "Accès en urgence à votre dossier",
    "pro.refused": "Accès refusé à un professionnel de santé bloqué",
    "pro.allow": "Professionnel de santé autorisé",
    "pro.block": "Professionnel de santé bloqué",
    "pro.unblock": "Professionnel de santé débloqué",
    "pro.emergency_setting": "Réglage de l'accès en cas d'urgence modifié",
    "pro.attending": "Médecin traitant déclaré",
    "dossier.hide": "Document masqué aux professionnels de santé",
    "dossier.unhide": "Document de nouveau visible des professionnels de santé",
}
_STATES = {"pending": "en attente", "active": "actif", "opposed": "opposé", "closed": "fermé"}
