""""Paramètres → Accès des professionnels de santé" (issue 18 §5): the professionals
authorised ("Autorisé(s)") and blocked ("Bloqué(s)"), "Bloquer"/"Débloquer", the switch
"Accès en cas d'urgence"; and "Masquer"/"Afficher" of each document of "Mon dossier".
Everything acts on the space shown (`who.space`): a parent manages a child's space
the same way. Forms go through the webmail's session and CSRF middlewares; the store
writes each change with its audit event; a change applies at the professional's next
API request (relay/web/pro_api.py reads the decisions afresh)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from mailbox_store.documents import NoSuchDocument
from policy.dossier_access import IdNatError, parse_idnat
from relay.web.context import FORM, WHO, Who
from relay.web.pages_dossier import _doc_id

if TYPE_CHECKING:
    from relay.web.app import Web

PAGE = "/parametres/professionnels"
TITLE = "Accès des professionnels de santé"


def routes(app: web.Application, w: Web) -> None:
    store = w.store

    async def page(request: web.Request, status: int = 200, error: str | None = None) -> web.Response:
        who: Who = request[WHO]
        records = await store.pro_list(who.space)
        rules = await store.pro_rules(who.space)
        return w.render(request, "pro_access.html", status=status, title=TITLE, error=error,
                        authorised=[r for r in records if r.allowed_at is not None and r.blocked_at is None],
                        blocked=[r for r in records if r.blocked_at is not None],
                        emergency=rules.emergency_enabled)

    async def show(request: web.Request) -> web.StreamResponse:
        return await page(request)

    async def change(request: web.Request, action: str) -> web.StreamResponse:
        who: Who = request[WHO]
        try:
            idnat = parse_idnat(str(request[FORM].get("idnat", ""))[:64])
        except IdNatError:
            return await page(request, 400, "Numéro invalide : indiquez les 11 chiffres du numéro RPPS, "
                                            "ou les 12 chiffres de l'identifiant national commençant par 8.")
        await store.pro_set(who.space, idnat, action, actor=who.actor, source=who.ip)
        who.session.flash.append({"block": "Professionnel bloqué : il ne voit plus rien de votre dossier.",
                                  "unblock": "Professionnel débloqué."}[action])
        raise web.HTTPSeeOther(PAGE)

    async def block(request: web.Request) -> web.StreamResponse:
        return await change(request, "block")

    async def unblock(request: web.Request) -> web.StreamResponse:
        return await change(request, "unblock")

    async def emergency(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        on = request[FORM].get("urgence") == "1"
        await store.set_pro_settings(who.space, who.actor, who.ip, emergency=on)
        who.session.flash.append("Accès en cas d'urgence activé." if on else "Accès en cas d'urgence désactivé.")
        raise web.HTTPSeeOther(PAGE)

    async def hide(request: web.Request, hidden: bool) -> web.StreamResponse:
        who: Who = request[WHO]
        try:
            await store.set_document_hidden(who.space, _doc_id(request), hidden, actor=who.actor, source=who.ip)
        except NoSuchDocument:
            raise web.HTTPNotFound() from None
        who.session.flash.append("Document masqué aux professionnels de santé (sauf son auteur et votre médecin "
                                 "traitant)." if hidden else "Document de nouveau visible des professionnels.")
        raise web.HTTPSeeOther("/dossier")

    async def mask(request: web.Request) -> web.StreamResponse:
        return await hide(request, True)

    async def unmask(request: web.Request) -> web.StreamResponse:
        return await hide(request, False)

    r = app.router
    r.add_get(PAGE, show)
    r.add_post(f"{PAGE}/bloquer", block)
    r.add_post(f"{PAGE}/debloquer", unblock)
    r.add_post(f"{PAGE}/urgence", emergency)
    r.add_post("/dossier/{doc}/masquer", mask)
    r.add_post("/dossier/{doc}/afficher", unmask)
