"""A patient in a browser (issue 11): log in, read what the MX delivered, download and
view attachments, answer the professional, [FIN], the dossier, the access history, a
parent in a child's space, live updates. Through the page only (pages.py)."""
from __future__ import annotations

import email
import email.policy
import re
import smtplib
from typing import Any

import pytest
from playwright.sync_api import expect

from policy.recipients import MailboxState
from tests.integration.conftest import INS_ACTIVE, INS_PENDING, PASSWORD, PASSWORD_HASH, SENDER
from tests.web.files import pdf as pdf_bytes, png as png_bytes
from tests.web.conftest import PATIENT, Contexts, Web, pro_message
from tests.web.pages import (BANNER, CLOSED_SENTENCE, accessible_text, conversation_link, expect_messagerie, folded,
                             login, nav, open_conversation, row_of)

SUBJECT = "Compte rendu de consultation"
MID = "<cr-1@test-operator.mssante.fr>"
PDF = pdf_bytes("Compte rendu du 3 decembre")
PNG = png_bytes(4, 3)
ATTACHED = (("compte-rendu.pdf", "application/pdf", PDF), ("radio.png", "image/png", PNG))
STRANGER = "297122B00100259"  # another active patient
CHILD = INS_PENDING  # a child's mailbox receives mail before anyone logs into it


def pro_writes(web: Web, **kw: Any) -> None:
    web.deliver(pro_message(**{"subject": SUBJECT, "message_id": MID, "attachments": ATTACHED, **kw}))


def test_login_refusal_says_nothing_about_the_account(web: Web, contexts: Contexts) -> None:
    page = contexts.page()
    texts = []
    for identifier, password in ((PATIENT, "mauvais mot de passe"), ("160017512300140@patient.mssante.fr", PASSWORD),
                                 (f"{INS_PENDING}@patient.mssante.fr", PASSWORD)):
        page.goto(web.url + "/")
        page.get_by_label("Identifiant", exact=True).fill(identifier)
        page.get_by_label("Mot de passe", exact=True).fill(password)
        page.get_by_role("button", name="Se connecter", exact=True).click()
        page.wait_for_load_state()
        expect(page.get_by_role("heading", name="Messagerie", level=1, exact=True)).to_have_count(0)
        expect(page.get_by_label("Identifiant", exact=True)).to_be_visible()
        main = page.locator("main") if page.locator("main").count() else page.locator("body")
        texts.append(main.inner_text())
    # wrong password, unknown INS, a pending (not active) mailbox: one and the same answer
    assert texts[0] == texts[1] == texts[2], texts
    assert texts[0].strip()


def test_read_a_message_delivered_by_the_mx(web: Web, contexts: Contexts) -> None:
    pro_writes(web)
    page = contexts.page()
    login(page, web.url)
    expect(page.get_by_text(BANNER, exact=True)).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.get_by_role("button", name="Se déconnecter", exact=True)).to_be_visible()
    link = conversation_link(page, SUBJECT)
    expect(link).to_be_visible()
    row = row_of(link)
    said = accessible_text(row)
    assert "Dr Martin" in said and SENDER in said, said
    assert re.search(r"non lu", said, re.I), f"no accessible unread mark in the row: {said!r}"
    assert re.search(r"\b2\b", said), f"no attachment count (2) in the row: {said!r}"
    open_conversation(page, SUBJECT)
    expect(page.get_by_text("Voici le compte rendu.")).to_be_visible()
    nav(page, "Messagerie")
    said = accessible_text(row_of(conversation_link(page, SUBJECT)))
    assert not re.search(r"non lu", said, re.I), f"still marked unread after reading: {said!r}"


def test_html_is_sanitised_and_remote_images_become_their_alt_text(web: Web, contexts: Contexts) -> None:
    html = ('<html><body><p style="position:fixed;top:0">Bonjour <b>Madame</b>,</p>'
            '<script>window.__pwned = 1</script><img src="http://198.51.100.7/pixel.png" alt="Logo du cabinet">'
            '<a href="javascript:window.__pwned=2">lien</a><img src=x onerror="window.__pwned=3">'
            '<p>Votre rendez-vous est confirme.</p></body></html>')
    m = email.message.EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = f"Dr Martin <{SENDER}>", PATIENT, "Rendez-vous", "<h-1@x>"
    m.set_content(html, subtype="html")
    web.deliver(m.as_bytes(policy=m.policy.clone(linesep="\r\n")))
    page = contexts.page()
    remote: list[str] = []
    page.on("request", lambda r: remote.append(r.url) if "198.51.100.7" in r.url else None)
    login(page, web.url)
    open_conversation(page, "Rendez-vous")
    expect(page.get_by_text("Votre rendez-vous est confirme.")).to_be_visible()
    expect(page.get_by_text("Logo du cabinet")).to_be_visible()
    for link in page.get_by_role("link", name="lien").all():
        link.click(no_wait_after=True)
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.__pwned") is None
    assert remote == []
    assert page.locator("[style*='position:fixed'], [style*='position: fixed']").count() == 0


def test_download_and_view_attachments(web: Web, contexts: Contexts) -> None:
    pro_writes(web)
    ctx = contexts.new()
    page = ctx.new_page()
    login(page, web.url)
    open_conversation(page, SUBJECT)
    for name, mime, content in ATTACHED:
        link = page.get_by_role("link", name=re.compile(re.escape(name))).first
        with page.expect_download() as got:
            link.click()
        download = got.value
        assert download.suggested_filename == name
        assert open(download.path(), "rb").read() == content
        r = ctx.request.get(link.evaluate("a => a.href"))
        assert r.status == 200 and r.body() == content
        assert r.headers["content-disposition"].startswith("attachment"), r.headers
        assert name in r.headers["content-disposition"]
        assert r.headers.get("x-content-type-options") == "nosniff"
    # PDF and PNG can also be viewed in the page: a second link beside the download one
    # shows them embedded (img, iframe, embed or object), served inline
    for name, mime, content in ATTACHED:
        views = [link for link in page.get_by_role("link", name=re.compile(re.escape(name))).all()
                 if link.get_attribute("download") is None]
        assert views, f"no link to view {name} in the page"
        views[0].click()
        page.wait_for_load_state()
        embedded = page.evaluate("""() => Array.from(document.querySelectorAll('img[src],iframe[src],embed[src],object[data]'))
            .map(e => e.src || e.data)""")
        served = []
        for url in embedded:
            r = ctx.request.get(url)
            if r.status == 200 and r.body() == content:
                served.append(r)
        assert served, f"{name}: no embedded view serving it among {embedded}"
        r = served[0]
        assert r.headers["content-type"].split(";")[0] == mime
        assert not r.headers.get("content-disposition", "").startswith("attachment")
        assert r.headers.get("x-content-type-options") == "nosniff"
        if mime == "image/png":
            page.wait_for_load_state("load")
            shown = page.locator("img").evaluate_all(
                "imgs => imgs.filter(i => i.complete && i.naturalWidth == 4).length")
            assert shown == 1, "the PNG is not displayed in the page"


def test_reply_reaches_the_professional(web: Web, contexts: Contexts) -> None:
    pro_writes(web)
    page = contexts.page()
    login(page, web.url)
    open_conversation(page, SUBJECT)
    page.get_by_label("Votre réponse", exact=True).fill("Merci docteur, voici mon ordonnance.")
    page.get_by_label("Pièce jointe", exact=True).set_input_files(
        files=[{"name": "ordonnance.pdf", "mimeType": "application/pdf", "buffer": pdf_bytes("Ordonnance")}])
    page.get_by_role("button", name="Envoyer", exact=True).click()
    page.wait_for_load_state()
    [got] = web.pro.wait(1, timeout=60)
    assert got.mail_from == PATIENT and got.rcpts == [SENDER]
    msg = email.message_from_bytes(got.content, policy=email.policy.default)
    assert msg["In-Reply-To"] == MID and MID in msg["References"]
    assert msg["DKIM-Signature"] and "d=patient.mssante.fr" in msg["DKIM-Signature"].replace(" ", "")
    assert "Merci docteur, voici mon ordonnance." in msg.get_body(("plain",)).get_content()
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "ordonnance.pdf" and att.get_content() == pdf_bytes("Ordonnance")
    # the Sent copy, as submission keeps it (the folders are reached from Messagerie)
    nav(page, "Messagerie")
    nav(page, re.compile("envoy", re.I))
    expect(page.get_by_text(re.compile(re.escape(SUBJECT))).first).to_be_visible()


def test_reply_refused_by_a_rule_shows_the_smtp_sentence(web: Web, contexts: Contexts) -> None:
    pro_writes(web)
    exe = b"MZ\x90\x00" + bytes(200)
    # what submission answers for the same attachment: the reference sentence
    m = email.message.EmailMessage()
    m["From"], m["To"], m["Subject"], m["In-Reply-To"] = PATIENT, SENDER, f"Re: {SUBJECT}", MID
    m.set_content("Merci")
    m.add_attachment(exe, maintype="application", subtype="octet-stream", filename="programme.exe")
    with web.rd.submission() as s, pytest.raises(smtplib.SMTPDataError) as refused:
        s.sendmail(PATIENT, [SENDER], m.as_bytes(policy=m.policy.clone(linesep="\r\n")))
    assert refused.value.smtp_code == 554
    # the text after the enhanced status code (RFC 3463), French before " / "
    french = re.sub(r"^\d\.\d{1,3}\.\d{1,3} ", "", refused.value.smtp_error.decode()).split(" / ")[0]
    page = contexts.page()
    login(page, web.url)
    open_conversation(page, SUBJECT)
    page.get_by_label("Votre réponse", exact=True).fill("Voici le fichier")
    page.get_by_label("Pièce jointe", exact=True).set_input_files(
        files=[{"name": "programme.exe", "mimeType": "application/octet-stream", "buffer": exe}])
    page.get_by_role("button", name="Envoyer", exact=True).click()
    page.wait_for_load_state()
    shown = page.locator("main").inner_text()
    assert folded(french) in folded(shown), f"SMTP says {french!r}; the page says {shown!r}"
    page.wait_for_timeout(1500)
    assert web.pro.received == []


def test_fin_closes_the_exchange_and_the_form_goes(web: Web, contexts: Contexts) -> None:
    pro_writes(web)
    page = contexts.page()
    login(page, web.url)
    open_conversation(page, SUBJECT)
    expect(page.get_by_label("Votre réponse", exact=True)).to_be_visible()
    web.deliver(pro_message(subject=f"Re: {SUBJECT} [FIN]", body="Fin de la prise en charge.\n",
                            message_id="<cr-2@test-operator.mssante.fr>", in_reply_to=MID))
    page.reload()
    expect(page.get_by_text(CLOSED_SENTENCE, exact=True)).to_be_visible()
    expect(page.get_by_label("Votre réponse", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Envoyer", exact=True)).to_have_count(0)
    # its messages in order: the first before the [FIN]
    text = page.locator("body").inner_text()
    assert text.index("Voici le compte rendu.") < text.index("Fin de la prise en charge.")


def dossier_entries(page: Any, title: str) -> Any:
    return page.get_by_text(title, exact=False)


def deletes(page: Any) -> Any:
    """The "Supprimer" of each document (a link to a confirmation, or a button)."""
    return page.get_by_role("link", name="Supprimer", exact=True).or_(
        page.get_by_role("button", name="Supprimer", exact=True))


def test_file_an_attachment_and_find_it_in_mon_dossier(web: Web, contexts: Contexts) -> None:
    pro_writes(web)
    page = contexts.page()
    page.on("dialog", lambda d: d.accept())  # a confirm() for "Supprimer", if the page uses one
    login(page, web.url)
    nav(page, "Mon dossier")
    expect(page.get_by_role("heading", name="Mon dossier", level=1)).to_be_visible()
    # filed at delivery: the PDF is there; delete it (with its confirmation) to file it again by hand
    expect(dossier_entries(page, "compte-rendu").first).to_be_visible()
    before = deletes(page).count()
    assert before >= 1
    deletes(page).first.click()
    page.wait_for_load_state()
    confirm = page.get_by_role("button", name=re.compile(r"^(Confirmer|Supprimer|Oui)", re.I))
    if page.get_by_role("heading", name="Mon dossier", level=1).count() == 0 or confirm.count() == before:
        confirm.first.click()  # a confirmation page (or dialog in the page) before the deletion
        page.wait_for_load_state()
    nav(page, "Mon dossier")
    expect(deletes(page)).to_have_count(before - 1)
    nav(page, "Messagerie")
    open_conversation(page, SUBJECT)
    buttons = page.get_by_role("button", name="Enregistrer dans mon dossier", exact=True)
    expect(buttons).to_have_count(len(ATTACHED))
    # the deleted document is one of the attachments, which one depends on the dossier's
    # order: file each attachment, twice (idempotent: twice files once, and the one
    # still in the dossier is not filed a second time)
    for index in range(len(ATTACHED)):
        for _ in range(2):
            page.get_by_role("button", name="Enregistrer dans mon dossier", exact=True).nth(index).click()
            page.wait_for_load_state()
    nav(page, "Mon dossier")
    expect(deletes(page)).to_have_count(before)
    text = page.locator("body").inner_text()
    assert "compte-rendu" in text and ("Dr Martin" in text or SENDER in text), text
    assert re.search(r"Comptes rendus|Résultats de biologie|Imagerie|Prescriptions|Autres", text), text


def test_access_history_shows_the_login_and_the_read(web: Web, contexts: Contexts) -> None:
    pro_writes(web)
    page = contexts.page()
    login(page, web.url)
    open_conversation(page, SUBJECT)
    nav(page, "Historique des accès")
    expect(page.get_by_role("heading", name="Historique des accès", level=1)).to_be_visible()
    text = page.locator("body").inner_text()
    assert "Connexion depuis 127.0.0.1" in text, text
    assert "Lecture d'un message" in text or "Lecture d’un message" in text, text
    # newest first: the read happened after the login
    first_read = min(i for i in (text.find("Lecture d'un message"), text.find("Lecture d’un message")) if i >= 0)
    assert first_read < text.find("Connexion depuis 127.0.0.1"), text


def test_parent_switches_to_the_childs_space(web: Web, contexts: Contexts) -> None:
    web.rd.call(web.rd.store.add_guardian(CHILD, INS_ACTIVE))
    web.deliver(pro_message(subject="Vaccins de l'enfant", message_id="<v-1@test-operator.mssante.fr>",
                            to=f"{CHILD}@patient.mssante.fr"), ins=CHILD)
    pro_writes(web)
    page = contexts.page()
    login(page, web.url)
    expect(conversation_link(page, "Vaccins")).to_have_count(0)
    select = page.get_by_label("Espace", exact=True)
    options = select.locator("option")
    assert options.count() == 2, options.all_inner_texts()
    child_option = [o for o in options.all() if o.get_attribute("selected") is None][0]
    child_label = child_option.inner_text().strip()
    select.select_option(label=child_label)
    submit = select.locator("xpath=ancestor::form[1]").get_by_role("button")
    if submit.count():
        submit.first.click()  # without JavaScript the selector's form has its own button
    page.wait_for_load_state()
    expect(conversation_link(page, "Vaccins")).to_be_visible()
    expect(conversation_link(page, SUBJECT)).to_have_count(0)

    def says_whose(page: Any) -> bool:
        text = page.evaluate("""() => { const b = document.body.cloneNode(true);
            b.querySelectorAll('select').forEach(s => s.remove()); return b.innerText; }""")
        return child_label in text or CHILD in text
    assert says_whose(page), "the child's Messagerie does not say whose space it is"
    open_conversation(page, "Vaccins")
    assert says_whose(page), "the child's conversation does not say whose space it is"
    nav(page, "Mon dossier")
    assert says_whose(page), "the child's Mon dossier does not say whose space it is"
    # the guardian is removed: the very next request no longer shows the child's space
    web.rd.call(web.rd.store.remove_guardian(CHILD, INS_ACTIVE))
    page.goto(web.url + "/")
    page.wait_for_load_state()
    assert conversation_link(page, "Vaccins").count() == 0
    assert CHILD not in page.content() and child_label not in page.locator("body").inner_text()


def test_live_update_on_delivery(web: Web, contexts: Contexts) -> None:
    pro_writes(web)
    page = contexts.page()
    login(page, web.url)
    expect(conversation_link(page, SUBJECT)).to_be_visible()
    page.evaluate("() => { window.__samePage = 'yes' }")
    web.deliver(pro_message(subject="Resultats de biologie", message_id="<bio-1@test-operator.mssante.fr>"))
    expect(conversation_link(page, "Resultats de biologie")).to_be_visible(timeout=30_000)
    assert page.evaluate("() => window.__samePage") == "yes", "the page was reloaded, not updated"


def test_logout_ends_the_session(web: Web, contexts: Contexts) -> None:
    page = contexts.page()
    login(page, web.url)
    messagerie = page.url
    page.get_by_role("button", name="Se déconnecter", exact=True).click()
    page.wait_for_load_state()
    expect(page.get_by_label("Identifiant", exact=True)).to_be_visible()
    page.goto(messagerie)
    expect(page.get_by_role("heading", name="Messagerie", level=1, exact=True)).to_have_count(0)
    expect(page.get_by_label("Identifiant", exact=True)).to_be_visible()


def test_stranger_patient_has_own_mailbox(web: Web, contexts: Contexts) -> None:
    """Two patients logged in at once in two browsers see only their own mail."""
    web.rd.call(web.rd.store.create_mailbox(STRANGER, MailboxState.ACTIVE, PASSWORD_HASH))
    pro_writes(web)
    web.deliver(pro_message(subject="Bilan sanguin", message_id="<s-1@test-operator.mssante.fr>",
                            to=f"{STRANGER}@patient.mssante.fr"), ins=STRANGER)
    a, b = contexts.page(), contexts.page()
    login(a, web.url)
    login(b, web.url, identifier=STRANGER)
    expect(conversation_link(a, SUBJECT)).to_be_visible()
    expect(conversation_link(a, "Bilan sanguin")).to_have_count(0)
    expect(conversation_link(b, "Bilan sanguin")).to_be_visible()
    expect(conversation_link(b, SUBJECT)).to_have_count(0)
    expect_messagerie(a)


def test_a_conversation_shows_its_older_messages(web: Web, contexts: Contexts) -> None:
    """The conversation is the whole thread, in order, however much mail came in between
    (issue 11: "A conversation: its messages in order")."""
    web.deliver(pro_message(subject="Suivi de grossesse", body="Premier examen: tout va bien.\n",
                            message_id="<g-1@test-operator.mssante.fr>"))
    with web.rd.smtp() as s:  # 60 other conversations arrive meanwhile (more than a list page)
        for i in range(60):
            s.sendmail(SENDER, [PATIENT], pro_message(subject=f"Information {i}", body="Sans rapport.\n",
                                                      message_id=f"<info-{i}@test-operator.mssante.fr>"))
    web.deliver(pro_message(subject="Re: Suivi de grossesse", body="Deuxieme examen: parfait.\n",
                            message_id="<g-2@test-operator.mssante.fr>",
                            in_reply_to="<g-1@test-operator.mssante.fr>"))
    page = contexts.page()
    login(page, web.url)
    open_conversation(page, "Re: Suivi de grossesse")
    expect(page.get_by_text("Deuxieme examen: parfait.")).to_be_visible()
    text = page.locator("main").inner_text()
    assert "Premier examen: tout va bien." in text, "the thread's first message is missing from the conversation"
    assert text.index("Premier examen") < text.index("Deuxieme examen")
