"""Issue 18 §5 in the webmail (aiohttp's client over real HTTPS): "Paramètres → Accès des
professionnels de santé" ("Autorisé(s)", "Bloqué(s)", "Bloquer"/"Débloquer", "Accès en
cas d'urgence"), "Masquer"/"Afficher" in "Mon dossier", a parent acting for a child, and
the professionals' accesses in "Historique des accès" with their name and RPPS."""
from __future__ import annotations

import base64
import hashlib
import json
import ssl
from html import unescape

import aiohttp
import pytest

from certs.pki import load_ca
from certs.professional import certificate_pem, issue_cps, sign_challenge
from mailbox_store.documents import NewDocument
from policy.recipients import MailboxState
from tests.integration.conftest import INS_ACTIVE, RunningDaemon
from tests.integration.test_web import INS_CHILD, logged_in
from tests.web.files import pdf

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
RPPS = "10009876543"
PAGE = "/parametres/professionnels"


def _file(relay: RunningDaemon, ins: str, title: str) -> str:
    content = pdf(title)
    meta = {"title": title, "filename": f"{title}.pdf", "mime_type": "application/pdf", "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(), "author": {"id": None, "name": None, "address": None}}
    mb = relay.call(relay.store.require_mailbox(ins))
    [doc_id] = relay.call(relay.store.file_documents(mb, [NewDocument(f"<{title}@t>", content, meta)], "mx"))
    return str(doc_id)


async def _pro_lists(relay: RunningDaemon, ins: str = INS_ACTIVE) -> tuple[int, dict]:
    """A professional (Jeanne Durand) logs in with a dev-CA card, declares consent, lists."""
    assert relay.daemon.web is not None
    card = issue_cps(load_ca(relay.pki("")), RPPS, "Jeanne", "Durand")
    base = f"https://127.0.0.1:{relay.daemon.web.port}"
    ctx = ssl.create_default_context(cafile=str(relay.pki("ca.pem")))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        async with http.post(f"{base}/pro/challenge") as r:
            nonce = (await r.json())["nonce"]
        body = {"nonce": nonce, "certificate": certificate_pem(card.cert),
                "signature": base64.b64encode(sign_challenge(card.key, nonce)).decode()}
        async with http.post(f"{base}/pro/session", json=body) as r:
            token = (await r.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{base}/pro/patients/{ins}/access", json={"consent": True}, headers=auth) as r:
            await r.read()
        async with http.get(f"{base}/pro/patients/{ins}/documents", headers=auth) as r:
            return r.status, json.loads(await r.read())


async def test_block_unblock_and_the_emergency_switch_from_the_settings(relay: RunningDaemon) -> None:
    assert await _pro_lists(relay) == (200, {"documents": []})
    client = await logged_in(relay)
    try:
        status, html, _ = await client.get("/parametres")
        assert status == 200 and f'href="{PAGE}">Accès des professionnels de santé<' in html
        status, html, _ = await client.get(PAGE)
        html = unescape(html)
        assert status == 200 and "<h1>Accès des professionnels de santé</h1>" in html
        assert ">Autorisé(s)</h2>" in html and ">Bloqué(s)</h2>" in html
        authorised = html.split(">Autorisé(s)</h2>")[1].split(">Bloqué(s)</h2>")[0]
        assert "Jeanne Durand" in authorised and f"RPPS {RPPS}" in authorised and ">Bloquer</button>" in authorised
        assert 'for="urgence">Accès en cas d\'urgence</label>' in html and 'id="urgence" name="urgence" value="1" checked' in html
        # a form without its CSRF token does nothing
        status, _, _ = await client.post(f"{PAGE}/bloquer", {"idnat": "8" + RPPS}, csrf=False)
        assert status == 403
        assert await _pro_lists(relay) == (200, {"documents": []})
        status, html, r = await client.post(f"{PAGE}/bloquer", {"idnat": "8" + RPPS})
        html = unescape(html)
        assert status == 200 and r.url.path == PAGE and "Professionnel bloqué" in html
        blocked = html.split(">Bloqué(s)</h2>")[1]
        assert "Jeanne Durand" in blocked and ">Débloquer</button>" in blocked
        assert await _pro_lists(relay) == (403, {"error": "blocked"})
        status, html, _ = await client.post(f"{PAGE}/debloquer", {"idnat": "8" + RPPS})
        assert status == 200 and await _pro_lists(relay) == (200, {"documents": []})
        status, html, _ = await client.post(f"{PAGE}/bloquer", {"idnat": "12 34"})
        assert status == 400 and "Numéro invalide" in unescape(html)
        # anyone can be blocked beforehand, by bare RPPS
        status, html, _ = await client.post(f"{PAGE}/bloquer", {"idnat": "10001112223"})
        assert status == 200 and "RPPS 10001112223" in unescape(html).split(">Bloqué(s)</h2>")[1]
        # the emergency switch: unchecked means off
        status, html, _ = await client.post(f"{PAGE}/urgence", {})
        assert status == 200 and "Accès en cas d'urgence désactivé" in unescape(html)
        mb = relay.call(relay.store.require_mailbox(INS_ACTIVE))
        assert relay.call(relay.store.pro_rules(mb)).emergency_enabled is False
        await client.post(f"{PAGE}/urgence", {"urgence": "1"})
        assert relay.call(relay.store.pro_rules(mb)).emergency_enabled is True
        # the history names the professional and says what they did
        _, html, _ = await client.get("/historique")
        html = unescape(html)
        assert f"Consultation de la liste de vos documents par un professionnel de santé depuis 127.0.0.1 " \
               f"(par Jeanne Durand, RPPS {RPPS})" in html
        assert "Accès refusé à un professionnel de santé bloqué" in html
        assert f"Professionnel de santé bloqué (RPPS {RPPS}) depuis 127.0.0.1" in html
    finally:
        await client.close()


async def test_hide_and_show_a_document_from_mon_dossier(relay: RunningDaemon) -> None:
    doc_id = _file(relay, INS_ACTIVE, "Compte rendu cardiologie")
    client = await logged_in(relay)
    try:
        _, html, _ = await client.get("/dossier")
        assert f'action="/dossier/{doc_id}/masquer"' in html and ">Masquer</button>" in html
        status, html, r = await client.post(f"/dossier/{doc_id}/masquer", {})
        html = unescape(html)
        assert status == 200 and r.url.path == "/dossier" and ">Afficher</button>" in html
        assert "Masqué aux professionnels de santé" in html
        assert await _pro_lists(relay) == (200, {"documents": []})  # hidden from them at once
        status, html, _ = await client.post(f"/dossier/{doc_id}/afficher", {})
        assert status == 200 and ">Masquer</button>" in html
        status, listing = await _pro_lists(relay)
        assert [d["id"] for d in listing["documents"]] == [doc_id]
        assert (await client.post(f"/dossier/{'0' * 32}/masquer", {}))[0] == 404
        _, html, _ = await client.get("/historique")
        html = unescape(html)
        assert "Document masqué aux professionnels de santé" in html
        assert "Document de nouveau visible des professionnels de santé" in html
    finally:
        await client.close()


async def test_a_parent_manages_the_childs_professionals(relay: RunningDaemon) -> None:
    relay.call(relay.store.set_state(INS_CHILD, MailboxState.ACTIVE))
    relay.call(relay.store.add_guardian(INS_CHILD, INS_ACTIVE))
    doc_id = _file(relay, INS_CHILD, "Carnet de vaccination")
    client = await logged_in(relay)
    try:
        await client.get("/messagerie")
        await client.post("/espace", {"espace": INS_CHILD})
        status, _, _ = await client.post(f"/dossier/{doc_id}/masquer", {})
        assert status == 200
        status, _, _ = await client.post(f"{PAGE}/bloquer", {"idnat": RPPS})
        assert status == 200
        child = relay.call(relay.store.require_mailbox(INS_CHILD))
        rules = relay.call(relay.store.pro_rules(child))
        assert rules.hidden == {doc_id} and rules.blocked == {"8" + RPPS}
        own = relay.call(relay.store.require_mailbox(INS_ACTIVE))
        assert relay.call(relay.store.pro_rules(own)).blocked == frozenset()  # the parent's own space untouched
        assert await _pro_lists(relay, INS_CHILD) == (403, {"error": "blocked"})
        events = relay.call(relay.store.audit_events(child.id))
        assert any(e.action == "pro.block" and e.actor == f"guardian:{INS_ACTIVE}" for e in events)
    finally:
        await client.close()
