"""The webmail (issue 11) over real HTTPS on loopback, driven by aiohttp's client with
a cookie jar: login and its throttle shared with IMAP, sessions, CSRF, headers,
foreign ids, reading and auditing, replies through submission's path, [FIN], filing,
guardians, live updates, export, closing, autoconfig. (The browser tests with
Chromium, axe and screenshots are in their own files.)"""
from __future__ import annotations

import asyncio
import base64
import imaplib
import io
import re
import tarfile
import time
import xml.etree.ElementTree as ET
from html import unescape
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from policy.recipients import MailboxState
from tests.integration.conftest import (INS_ACTIVE, INS_CLOSED, INS_PENDING, INS_UNKNOWN, OPERATOR_DOMAIN,
                                        PASSWORD, SENDER, RunningDaemon, message)
from tests.integration.webclient import WebClient

# the middlewares use aiohttp's typed request keys: a plain string key would warn, and
# here (the daemon runs in this process) fail the request
pytestmark = pytest.mark.filterwarnings("error::aiohttp.web_exceptions.NotAppKeyWarning")

INS_OTHER = "185022A12345682"  # second patient for foreign-id tests (re-created active)
INS_CHILD = "297122B00100160"
PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
REFUSED = "Identifiant ou mot de passe incorrect."


def with_pdf(subject: str = "Compte rendu", body: str = "Voici le compte rendu.", extra: str = "",
             message_id: str | None = None) -> bytes:
    mid = message_id or f"<{abs(hash(subject + body))}@{OPERATOR_DOMAIN}>"
    b64 = base64.b64encode(PDF).decode()
    return (f"From: Dr Martin <{SENDER}>\r\nTo: <{INS_ACTIVE}@patient.mssante.fr>\r\nSubject: {subject}\r\n"
            f"Message-ID: {mid}\r\n{extra}MIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
            f"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
            "--b1\r\nContent-Type: application/pdf; name=cr.pdf\r\nContent-Disposition: attachment; filename=cr.pdf\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b1--\r\n").encode()


@pytest.fixture
async def web(relay: RunningDaemon) -> AsyncIterator[WebClient]:
    assert relay.daemon.web is not None
    client = WebClient(relay.daemon.web.port, relay.pki("ca.pem"))
    yield client
    await client.close()


async def logged_in(relay: RunningDaemon, ins: str = INS_ACTIVE) -> WebClient:
    assert relay.daemon.web is not None
    client = WebClient(relay.daemon.web.port, relay.pki("ca.pem"))
    status, _, r = await client.login(ins, PASSWORD)
    assert status == 200 and r.url.path == "/messagerie"
    return client


def audit(relay: RunningDaemon, ins: str) -> list:
    mb = relay.call(relay.store.get_mailbox(ins))
    return relay.call(relay.store.audit_events(mb.id))


# ---- login, sessions, headers --------------------------------------------------------

async def test_login_page_headers_and_labels(web: WebClient) -> None:
    status, html, r = await web.get("/")
    assert status == 200
    assert '<html lang="fr">' in html
    for label in ('for="identifiant">Identifiant<', 'for="mot_de_passe">Mot de passe<', ">Se connecter<"):
        assert label in html
    csp = r.headers["Content-Security-Policy"]
    script = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert "unsafe-inline" not in script and "frame-ancestors 'none'" in csp
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_login_sets_a_new_strict_cookie_and_logout_ends_it(relay: RunningDaemon, web: WebClient) -> None:
    await web.get("/")
    planted = "attacker-chosen-session-id-0123456789abcdef"
    web.http.cookie_jar.update_cookies({"__Host-mssante": planted}, aiohttp.client.URL(web.base))
    async with web.http.post(web.base + "/", data={"csrf": web.csrf, "identifiant": f"{INS_ACTIVE}@patient.mssante.fr",
                                                   "mot_de_passe": PASSWORD}, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/messagerie"
        cookie = next(v for v in r.headers.getall("Set-Cookie") if v.startswith("__Host-mssante="))
    flags = {p.strip().lower() for p in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags
    sid = cookie.split(";")[0].split("=", 1)[1]
    assert sid != planted and len(sid) >= 43
    status, html, _ = await web.get("/messagerie")
    assert status == 200 and "<h1>Messagerie</h1>" in html and "Se déconnecter" in html
    status, _, r = await web.post("/deconnexion")
    assert r.url.path == "/"
    status, _, r = await web.get("/messagerie")
    assert r.url.path == "/"  # the old session is gone
    assert any(e.action == "login" and e.detail == "web" and e.source == "127.0.0.1" for e in audit(relay, INS_ACTIVE))


async def test_refusals_do_not_tell_whether_the_account_exists(web: WebClient) -> None:
    for login, password in ((INS_ACTIVE, "wrong"), (INS_UNKNOWN, PASSWORD), (INS_PENDING, PASSWORD),
                            (INS_CLOSED, PASSWORD), ("not-an-ins", PASSWORD)):
        status, html, _ = await web.login(login, password)
        assert status == 401 and REFUSED in html, login
        assert "Se déconnecter" not in html


async def test_failures_over_imap_count_against_web_login(relay: RunningDaemon, web: WebClient) -> None:
    def fail_imap() -> None:
        # 5 free failures, then waits of 1, 2, 4, 8 s (auth.first_delay doubling): after 8
        # the next attempt from this network must wait longer than the replies took
        for _ in range(8):
            client = relay.imap(login=False)
            with pytest.raises(imaplib.IMAP4.error):
                client.login(INS_ACTIVE, "wrong password")
            client.logout()

    await asyncio.to_thread(fail_imap)
    status, html, _ = await web.login(INS_ACTIVE, PASSWORD)  # the right password, yet throttled
    assert status == 401 and "Trop de tentatives" in html


async def test_sessions_expire_idle_and_at_most(relay: RunningDaemon) -> None:
    assert relay.daemon.web is not None
    sessions = relay.daemon.web.web.sessions
    assert (sessions.idle, sessions.longest) == (900.0, 43200.0)  # web.session_idle / session_max defaults
    client = await logged_in(relay)
    try:
        sessions.idle = 0.5
        await asyncio.sleep(1.0)
        status, html, r = await client.get("/messagerie")
        assert r.url.path == "/" and "Votre session a expiré" in html
        sessions.idle, sessions.longest = 900.0, 1.0
        await client.login(INS_ACTIVE, PASSWORD)
        assert (await client.get("/messagerie"))[2].url.path == "/messagerie"
        for _ in range(3):  # active all along, still ends at session_max
            await asyncio.sleep(0.4)
            await client.get("/historique")
        assert (await client.get("/messagerie"))[2].url.path == "/"
    finally:
        sessions.idle, sessions.longest = 900.0, 43200.0
        await client.close()


async def test_post_without_csrf_is_refused_and_does_nothing(relay: RunningDaemon, web: WebClient) -> None:
    status, _, _ = await web.post("/", {"identifiant": INS_ACTIVE, "mot_de_passe": PASSWORD}, csrf=False)
    assert status == 403
    client = await logged_in(relay)
    try:
        for form in ({"adresse": "moi@example.org"}, {"adresse": "moi@example.org", "csrf": "forged"}):
            status, html, _ = await client.post("/parametres/notification", form, csrf=False)
            assert status == 403 and "Accès refusé" in html
        assert relay.call(relay.store.get_mailbox(INS_ACTIVE)).notify_email is None
        status, _, _ = await client.post("/parametres/notification", {"adresse": "moi@example.org"})
        assert status == 200
        assert relay.call(relay.store.get_mailbox(INS_ACTIVE)).notify_email == "moi@example.org"
    finally:
        await client.close()


# ---- reading -------------------------------------------------------------------------

async def test_read_a_message_list_view_download_audited(relay: RunningDaemon) -> None:
    relay.deliver(with_pdf(subject="Résultats de =?utf-8?q?biologie?=", body="Vos résultats sont normaux."))
    client = await logged_in(relay)
    try:
        status, html, _ = await client.get("/messagerie")
        assert "Seul un professionnel de santé peut débuter un échange." in html
        assert "Résultats de biologie" in html and SENDER in html and "Dr Martin" in html
        assert "Non lu" in html and "1 pièce jointe" in html
        status, html, _ = await client.get("/messagerie/reception/1")
        assert status == 200 and "Vos résultats sont normaux." in html
        assert "cr.pdf" in html and "Enregistrer dans mon dossier" in html and "Votre réponse" in html
        flags = relay.call(relay.store.messages(INS_ACTIVE))[0].flags
        assert "\\Seen" in flags  # read, as an IMAP FETCH of the body
        status, body, r = await client.get_bytes("/messagerie/reception/1/pj/2")
        assert status == 200 and body == PDF
        assert r.headers["Content-Disposition"].startswith("attachment;") and "cr.pdf" in r.headers["Content-Disposition"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        status, body, r = await client.get_bytes("/messagerie/reception/1/pj/2?vue=1")
        assert r.headers["Content-Type"] == "application/pdf" and r.headers["Content-Disposition"].startswith("inline")
        status, html, _ = await client.get("/messagerie/reception/1?apercu=2")
        assert '<iframe src="/messagerie/reception/1/pj/2?vue=1"' in html
        actions = [(e.action, e.actor, e.source) for e in audit(relay, INS_ACTIVE)]
        assert ("message.read", "patient", "127.0.0.1") in actions
        assert ("attachment.download", "patient", "127.0.0.1") in actions
        status, html, _ = await client.get("/historique")
        assert "Connexion depuis 127.0.0.1" in html and "Lecture d&#39;un message" in html
        assert "Téléchargement d&#39;une pièce jointe" in html
    finally:
        await client.close()


async def test_html_mail_is_sanitised(relay: RunningDaemon) -> None:
    html_body = ('<p style="position:fixed" onclick="steal()">Bonjour <b>Madame</b></p><script>alert(1)</script>'
                 '<img src="https://tracker.example/pixel.gif" alt="Logo du cabinet">'
                 '<a href="javascript:alert(2)">lien</a><iframe src="https://evil.example/"></iframe>')
    raw = (f"From: Dr Martin <{SENDER}>\r\nTo: <{INS_ACTIVE}@patient.mssante.fr>\r\nSubject: HTML\r\n"
           f"Message-ID: <html1@{OPERATOR_DOMAIN}>\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/html; charset=utf-8\r\n\r\n{html_body}\r\n").encode()
    relay.deliver(raw)
    client = await logged_in(relay)
    try:
        _, html, _ = await client.get("/messagerie/reception/1")
        body = html.split('<div class="body html">', 1)[1].split("</div>", 1)[0]
        assert "<b>Madame</b>" in body and "Logo du cabinet" in body
        for bad in ("<script", "alert(1)", "style=", "onclick", "tracker.example", "<img", "javascript:", "<iframe",
                    "evil.example"):
            assert bad not in body, bad
    finally:
        await client.close()


async def test_search_uses_subject_correspondent_and_body(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="Ordonnance", body="Amoxicilline 1 g\r\n"))
    relay.deliver(message(subject="Radio du genou", body="Rien de grave\r\n"))
    client = await logged_in(relay)
    try:
        _, html, _ = await client.get("/messagerie?q=amoxicilline")
        assert "Ordonnance" in html and "Radio du genou" not in html
        _, html, _ = await client.get("/messagerie?q=GENOU")
        assert "Radio du genou" in html and "Ordonnance" not in html
        assert any(e.action == "message.search" for e in audit(relay, INS_ACTIVE))
    finally:
        await client.close()


async def test_another_patients_ids_answer_404_like_missing_ones(relay: RunningDaemon) -> None:
    relay.call(relay.store.set_state(INS_OTHER, MailboxState.ACTIVE))
    relay.deliver(with_pdf())  # INS_ACTIVE's message 1, with a part 2
    owner = await logged_in(relay)
    other = await logged_in(relay, INS_OTHER)
    try:
        await owner.post("/messagerie/reception/1/pj/2/dossier")
        doc_id = relay.call(relay.store.documents(relay.call(relay.store.get_mailbox(INS_ACTIVE))))[0].id
        for path in ("/messagerie/reception/1", "/messagerie/reception/1/pj/2", f"/dossier/{doc_id}",
                     f"/dossier/{doc_id}/supprimer"):
            status, html, _ = await other.get(path)
            missing_status, missing_html, _ = await other.get(re.sub(r"/1\b|[0-9a-f]{32}", lambda m: "/999" if
                                                                     m.group().startswith("/") else "f" * 32, path))
            assert status == missing_status == 404, path
            assert html == missing_html, path
        status, _, _ = await other.post(f"/dossier/{doc_id}/supprimer")
        assert status == 404
        status, _, _ = await other.post("/messagerie/reception/1/repondre", {"texte": "intrus"})
        assert status == 404
        assert len(relay.call(relay.store.documents(relay.call(relay.store.get_mailbox(INS_ACTIVE))))) == 1
        assert relay.call(relay.store.messages(INS_OTHER, "Sent")) == []
    finally:
        await owner.close()
        await other.close()


# ---- replying ------------------------------------------------------------------------

async def test_reply_lands_in_sent_and_the_queue(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="Compte rendu", message_id=f"<orig1@{OPERATOR_DOMAIN}>"))
    client = await logged_in(relay)
    try:
        await client.get("/messagerie/reception/1")
        form = client.multipart({"texte": "Merci docteur, à bientôt."}, ("question.pdf", PDF, "application/pdf"))
        status, html, r = await client.post("/messagerie/reception/1/repondre", form)
        assert status == 200 and r.url.path == "/messagerie/reception/1" and "Votre réponse a été envoyée." in html
        sent = relay.call(relay.store.messages(INS_ACTIVE, "Sent"))
        assert len(sent) == 1
        raw = relay.call(relay.store.fetch_raw(INS_ACTIVE, "Sent", sent[0].uid))
        assert f"In-Reply-To: <orig1@{OPERATOR_DOMAIN}>".encode() in raw and b"Subject: Re: Compte rendu" in raw
        assert f"From: {INS_ACTIVE}@patient.mssante.fr".encode() in raw and b"question.pdf" in raw
        items = [i for i in relay.call(relay.store.queue_items()) if i.kind == "reply"]
        assert [(i.rcpt, i.mail_from) for i in items] == [(SENDER, f"{INS_ACTIVE}@patient.mssante.fr")]
        queued = relay.call(relay.store.queue_content(items[0]))
        assert b"DKIM-Signature:" in queued  # the same queue_outgoing as submission
        _, html, _ = await client.get("/messagerie?dossier=envoyes")
        assert "Re: Compte rendu" in html
    finally:
        await client.close()


async def test_fin_closes_the_form_and_a_forced_reply_gets_the_smtp_sentence(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="Fin de suivi [FIN]", message_id=f"<fin1@{OPERATOR_DOMAIN}>"))
    client = await logged_in(relay)
    try:
        _, html, _ = await client.get("/messagerie/reception/1")
        assert "Le professionnel a mis fin à l&#39;échange." in html
        assert "Votre réponse" not in html and ">Envoyer<" not in html
        form = client.multipart({"texte": "Une dernière question"})
        status, html, _ = await client.post("/messagerie/reception/1/repondre", form)
        assert status == 400 and "Le professionnel a clos cet echange: il doit vous ecrire a nouveau" in html
        assert relay.call(relay.store.messages(INS_ACTIVE, "Sent")) == []
    finally:
        await client.close()


async def test_uploads_are_bounded_while_streaming_and_checked(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="Compte rendu", message_id=f"<up1@{OPERATOR_DOMAIN}>"))
    client = await logged_in(relay)
    try:
        await client.get("/messagerie/reception/1")
        big = client.multipart({"texte": "gros fichier"}, ("scan.pdf", b"%PDF-1.4\n" + b"0" * (6 * 2**20), "application/pdf"))
        status, html, _ = await client.post("/messagerie/reception/1/repondre", big)
        assert status == 413 and "5 Mo au plus" in html
        await client.get("/messagerie/reception/1")
        exe = client.multipart({"texte": "programme"}, ("outil.pdf", b"MZ\x90\x00" + b"\x00" * 200, "application/pdf"))
        status, html, _ = await client.post("/messagerie/reception/1/repondre", exe)
        assert status == 400 and "outil.pdf" in html  # the attachment rule's sentence naming the part
        assert relay.call(relay.store.messages(INS_ACTIVE, "Sent")) == []
    finally:
        await client.close()


# ---- the dossier -----------------------------------------------------------------------

async def test_filing_an_attachment_is_idempotent_and_listed(relay: RunningDaemon) -> None:
    relay.deliver(with_pdf(subject="Compte rendu opératoire"))
    client = await logged_in(relay)
    mb = relay.call(relay.store.get_mailbox(INS_ACTIVE))
    try:
        before = len(relay.call(relay.store.documents(mb)))  # the MX filed it at delivery already
        await client.get("/messagerie/reception/1")
        status, html, _ = await client.post("/messagerie/reception/1/pj/2/dossier")
        assert status == 200 and ("Ce document est déjà dans votre dossier." in html
                                  or "Document enregistré dans votre dossier." in html)
        docs = relay.call(relay.store.documents(mb))
        assert len(docs) == max(before, 1)
        await client.post("/messagerie/reception/1/pj/2/dossier")
        assert len(relay.call(relay.store.documents(mb))) == len(docs)
        _, html, _ = await client.get("/dossier")
        assert "<h1>Mon dossier</h1>" in html and "cr.pdf" in html and SENDER in html
        for heading in ("Comptes rendus", "Résultats de biologie", "Imagerie", "Prescriptions", "Autres"):
            assert heading in html
        status, body, r = await client.get_bytes(f"/dossier/{docs[0].id}")
        assert body == PDF and r.headers["Content-Disposition"].startswith("attachment")
        assert any(e.action == "dossier.download" and e.source == "127.0.0.1" for e in audit(relay, INS_ACTIVE))
        _, html, _ = await client.get(f"/dossier/{docs[0].id}/supprimer")
        assert ">Supprimer<" in html
        await client.post(f"/dossier/{docs[0].id}/supprimer")
        assert len(relay.call(relay.store.documents(mb))) == len(docs) - 1
    finally:
        await client.close()


# ---- guardians -------------------------------------------------------------------------

async def test_a_parent_switches_to_the_childs_space_until_removed(relay: RunningDaemon) -> None:
    relay.call(relay.store.set_state(INS_CHILD, MailboxState.ACTIVE))
    relay.call(relay.store.add_guardian(INS_CHILD, INS_ACTIVE))
    relay.deliver(message(subject="Vaccin de l'enfant", to=f"{INS_CHILD}@patient.mssante.fr"), ins=INS_CHILD)
    client = await logged_in(relay)
    try:
        _, html, _ = await client.get("/messagerie")
        html = unescape(html)
        assert 'for="espace">Espace<' in html and f"Espace de l'enfant {INS_CHILD}" in html
        assert "Vaccin" not in html
        _, html, r = await client.post("/espace", {"espace": INS_CHILD})
        html = unescape(html)
        assert r.url.path == "/messagerie" and "Vaccin de l'enfant" in html
        assert f"Vous êtes dans l'espace de l'enfant {INS_CHILD}" in html
        _, html, _ = await client.get("/messagerie/reception/1")
        assert "Vaccin" in html
        assert any(e.action == "message.read" and e.actor == f"guardian:{INS_ACTIVE}" for e in audit(relay, INS_CHILD))
        relay.call(relay.store.remove_guardian(INS_CHILD, INS_ACTIVE))
        status, html, _ = await client.get("/messagerie/reception/1")
        assert status == 404  # the child's message is no longer reachable
        _, html, _ = await client.get("/messagerie")
        html = unescape(html)
        assert "Vaccin" not in html and f"enfant {INS_CHILD}" not in html
        status, _, _ = await client.post("/espace", {"espace": INS_CHILD})
        assert status == 404
    finally:
        await client.close()


# ---- live updates, settings, closing, autoconfig ---------------------------------------------

async def test_messagerie_gets_live_events_on_delivery(relay: RunningDaemon) -> None:
    client = await logged_in(relay)
    try:
        _, html, _ = await client.get("/messagerie")
        assert 'data-events="/evenements"' in html
        async with client.http.get(client.base + "/evenements") as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            assert "Content-Security-Policy" in r.headers
            await r.content.readline()  # retry:
            await asyncio.to_thread(relay.deliver, message(subject="En direct"))
            deadline = time.monotonic() + 30
            seen = b""
            while b"event: nouveau" not in seen and time.monotonic() < deadline:
                seen += await asyncio.wait_for(r.content.readline(), 30)
            assert b"event: nouveau" in seen
    finally:
        await client.close()


async def test_export_password_change_and_close(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="A garder"))
    client = await logged_in(relay)
    await client.get("/parametres")
    async with client.http.post(client.base + "/parametres/export", data={"csrf": client.csrf}) as r:
        assert r.status == 200 and r.headers["Content-Disposition"].startswith("attachment")
        data = await r.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert "manifest.json" in names and any(n.startswith("messages/INBOX/") for n in names)
    await client.get("/parametres")
    status, html, _ = await client.post("/parametres/mot-de-passe", {"actuel": "wrong", "nouveau": "x" * 14,
                                                                    "confirmation": "x" * 14})
    assert status == 400 and "Mot de passe actuel incorrect." in html
    await client.get("/parametres")
    status, html, _ = await client.post("/parametres/mot-de-passe", {"actuel": PASSWORD, "nouveau": "n" * 14,
                                                                    "confirmation": "n" * 14})
    assert status == 200 and "Mot de passe modifié" in html
    other = WebClient(relay.daemon.web.port, relay.pki("ca.pem"))  # type: ignore[union-attr]
    try:
        assert (await other.login(INS_ACTIVE, PASSWORD))[0] == 401
        assert (await other.login(INS_ACTIVE, "n" * 14))[2].url.path == "/messagerie"
    finally:
        await other.close()
    _, html, _ = await client.get("/parametres/fermer")
    assert "10 ans" in html and "refusés" in html
    status, html, _ = await client.post("/parametres/fermer", {"mot_de_passe": "wrong"})
    assert status == 400 and relay.call(relay.store.get_mailbox(INS_ACTIVE)).state.value == "active"
    await client.get("/parametres/fermer")
    assert relay.config.archive_recipient  # init writes a development archive key
    status, html, _ = await client.post("/parametres/fermer", {"mot_de_passe": "n" * 14})
    assert status == 200 and "Espace fermé" in html
    assert relay.call(relay.store.get_mailbox(INS_ACTIVE)).state.value == "closed"
    assert list((relay.base / "archives").glob(f"{INS_ACTIVE}-*.tar.gpg"))
    assert (await client.get("/messagerie"))[2].url.path == "/"
    await client.close()


async def test_closing_waits_for_gnupg_off_the_event_loop_and_ends_logged_out(
        relay: RunningDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """"Fermer mon espace" runs GnuPG (child processes waited for) and the archive's
    fsyncs in worker threads, never on the daemon's event loop; the "Espace fermé" page
    that follows is a logged-out page (the session is gone: no menu, no space selector)."""
    import gnupg

    import relay.ops.export as export_module

    calls: list[tuple[str, bool]] = []

    def on_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def watched(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kw: Any) -> Any:
            calls.append((name, on_loop()))
            return fn(*args, **kw)
        return wrapper

    for name in ("__init__", "list_keys", "encrypt_file"):
        monkeypatch.setattr(gnupg.GPG, name, watched(name, getattr(gnupg.GPG, name)))
    monkeypatch.setattr(export_module, "durable_replace", watched("durable_replace", export_module.durable_replace))
    relay.deliver(message(subject="A archiver"))
    client = await logged_in(relay)
    try:
        await client.get("/parametres/fermer")
        status, html, _ = await client.post("/parametres/fermer", {"mot_de_passe": PASSWORD})
    finally:
        await client.close()
    assert status == 200 and "Espace fermé" in html
    assert {n for n, _ in calls} == {"__init__", "list_keys", "encrypt_file", "durable_replace"}
    assert [c for c in calls if c[1]] == [], "GnuPG or an fsync ran on the event loop"
    main = html[html.index("<body"):]
    for logged_in_only in ("Se déconnecter", "Changer d'espace", 'href="/parametres"', 'href="/dossier"',
                           "Vous êtes dans votre propre espace", 'name="espace"'):
        assert logged_in_only not in main, logged_in_only
    assert 'href="/"' in main


async def test_autoconfig_describes_imap_and_submission(relay: RunningDaemon, web: WebClient) -> None:
    for path in ("/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml?emailaddress=x"):
        status, text, r = await web.get(path)
        assert status == 200 and r.headers["Content-Type"].startswith("application/xml")
        root = ET.fromstring(text)
        provider = root.find("emailProvider")
        assert provider is not None and provider.findtext("domain") == "patient.mssante.fr"
        servers = [(s.tag, s.get("type"), int(s.findtext("port") or 0), s.findtext("socketType"),
                    s.findtext("username")) for s in provider if s.tag.endswith("Server")]
        imap, sub = relay.imap_ports, relay.daemon.submission_ports
        assert servers == [("incomingServer", "imap", imap[1], "SSL", "%EMAILADDRESS%"),
                           ("incomingServer", "imap", imap[0], "STARTTLS", "%EMAILADDRESS%"),
                           ("outgoingServer", "smtp", sub[1], "SSL", "%EMAILADDRESS%"),
                           ("outgoingServer", "smtp", sub[0], "STARTTLS", "%EMAILADDRESS%")]


async def test_write_to_an_allowed_pharmacy_only(relay: RunningDaemon) -> None:
    pharmacy = f"officine@{OPERATOR_DOMAIN}"
    client = await logged_in(relay)
    try:
        _, html, _ = await client.get("/messagerie")
        assert "Écrire à ma pharmacie" not in html
        assert (await client.get("/ecrire"))[0] == 404
        mb = relay.call(relay.store.get_mailbox(INS_ACTIVE))
        relay.call(relay.store.allow_pharmacy(mb, pharmacy))
        _, html, _ = await client.get("/messagerie")
        assert 'href="/ecrire"' in html and "Écrire à ma pharmacie" in html
        status, html, _ = await client.get("/ecrire")
        assert status == 200 and "<h1>Écrire à ma pharmacie</h1>" in html
        form = client.multipart({"destinataire": pharmacy, "objet": "Ordonnance", "texte": "Bonjour, voici mon ordonnance."},
                                ("ordonnance.pdf", PDF, "application/pdf"))
        status, html, r = await client.post("/ecrire", form)
        assert status == 200 and "Votre message a été envoyé à la pharmacie." in html
        assert [i.rcpt for i in relay.call(relay.store.queue_items()) if i.kind == "reply"] == [pharmacy]
        await client.get("/ecrire")
        form = client.multipart({"destinataire": SENDER, "texte": "Je commence"})  # not a pharmacy
        status, _, _ = await client.post("/ecrire", form)
        assert status == 404
        assert len(relay.call(relay.store.messages(INS_ACTIVE, "Sent"))) == 1
    finally:
        await client.close()
