""""Mon dossier": the documents by category, each viewed or downloaded (audited by the
store), and deleted after a confirmation (a page of its own: it works without JS)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aiohttp import web

from dossier_bridge.categories import ORDER, category
from dossier_bridge.dossier import DocumentUnreadable, read_document
from mailbox_store.documents import NoSuchDocument
from relay.web.shared import VIEW_CSP
from relay.web.context import WHO, Who
from relay.web.pages_mail import _disposition

if TYPE_CHECKING:
    from relay.web.app import Web

_DOC_ID = re.compile(r"^[0-9a-f]{32}$")
VIEWABLE = {"application/pdf", "image/jpeg", "image/png"}


def _doc_id(request: web.Request) -> str:
    doc_id = request.match_info["doc"]
    if not _DOC_ID.match(doc_id):
        raise web.HTTPNotFound()
    return doc_id


def routes(app: web.Application, w: Web) -> None:
    store = w.store

    async def dossier(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        docs = await store.documents(who.space)
        groups: dict[str, list] = {name: [] for name in ORDER}
        for d in sorted(docs, key=lambda d: str(d.meta.get("date") or d.filed_at.isoformat()), reverse=True):
            groups[category(d.meta)].append(d)
        return w.render(request, "dossier.html", title="Mon dossier", groups=groups, viewable=VIEWABLE,
                        count=len(docs), hidden=(await store.pro_rules(who.space)).hidden)

    async def document(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        doc_id = _doc_id(request)
        try:
            doc, content = await read_document(store, who.space, doc_id, who.actor, who.ip, w.rt.config.attachments)
        except NoSuchDocument:
            raise web.HTTPNotFound() from None
        except DocumentUnreadable:
            return w.error_page(request, 500, "Ce document ne peut pas être lu : il ne correspond plus à "
                                "l'empreinte enregistrée lors de son dépôt.")
        mime = str(doc.meta.get("mime_type") or "application/octet-stream")
        inline = request.query.get("vue") == "1" and mime in VIEWABLE
        name = str(doc.meta.get("filename") or doc.meta.get("title") or "document")
        resp = web.Response(body=content, content_type=mime if inline else "application/octet-stream")
        resp.headers["Content-Disposition"] = _disposition("inline" if inline else "attachment", name)
        if inline:
            resp.headers["Content-Security-Policy"] = VIEW_CSP
            resp.headers["X-Frame-Options"] = "SAMEORIGIN"
        return resp

    async def confirm_delete(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        doc_id = _doc_id(request)
        doc = next((d for d in await store.documents(who.space) if d.id == doc_id), None)
        if doc is None:
            raise web.HTTPNotFound()
        return w.render(request, "delete.html", title="Supprimer un document", doc=doc)

    async def delete(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        doc_id = _doc_id(request)
        try:
            await store.delete_document(who.space, doc_id, who.actor, who.ip)
        except NoSuchDocument:
            raise web.HTTPNotFound() from None
        who.session.flash.append("Document supprimé de votre dossier.")
        raise web.HTTPSeeOther("/dossier")

    r = app.router
    r.add_get("/dossier", dossier)
    r.add_get("/dossier/{doc}", document)
    r.add_get("/dossier/{doc}/supprimer", confirm_delete)
    r.add_post("/dossier/{doc}/supprimer", delete)
