"""Every page of the webmail for everyone (issue 11, "Tests (a real browser)"): axe-core
finds no serious or critical violation; at 375×667 (a phone) and 1280×800 nothing
scrolls sideways; the login and a reply work with the keyboard alone. A screenshot of
each page at both sizes goes to the test's output folder (conftest.shots)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.integration.conftest import INS_ACTIVE, INS_PENDING, PASSWORD, SENDER
from tests.web.conftest import DESKTOP, PHONE, Contexts, Web, pro_message
from tests.web.pages import (CLOSED_SENTENCE, conversation_link, horizontal_overflow, login, nav,
                             open_conversation, serious_violations, tab_to)
from tests.web.test_webmail import SUBJECT, pro_writes

PHARMACY = "pharmacie.centrale@test-operator.mssante.fr"
OTHER_PRO = "dr.durand@test-operator.mssante.fr"


def visit(page: Any, name: str, problems: list[str], go: Any) -> str | None:
    """Reach a page by what a user does (go), return its URL, or note why it is unreachable."""
    try:
        go()
        page.wait_for_load_state()
        return page.url
    except Exception as e:  # noqa: BLE001 - the tour goes on; the failure is listed at the end
        problems.append(f"{name}: not reachable ({str(e).splitlines()[0]})")
        return None


def tour(web: Web, page: Any) -> tuple[dict[str, str], list[str], Any]:
    """Every page of a patient who is also a parent, reached through the interface; and
    how to switch to the child's space (a state of the session: checked last)."""
    problems: list[str] = []
    urls: dict[str, str] = {"connexion": web.url + "/"}
    login(page, web.url)
    urls["messagerie"] = page.url

    def search() -> None:
        page.get_by_label("Rechercher", exact=True).fill("compte rendu")
        page.get_by_label("Rechercher", exact=True).press("Enter")
    steps: list[tuple[str, Any]] = [
        ("recherche", search),
        ("conversation", lambda: (nav(page, "Messagerie"), open_conversation(page, SUBJECT))),
        ("conversation-fermee", lambda: (nav(page, "Messagerie"), open_conversation(page, "Suivi termine"),
                                         expect(page.get_by_text(CLOSED_SENTENCE)).to_be_visible())),
        ("envoyes", lambda: (nav(page, "Messagerie"), nav(page, re.compile(r"envoy", re.I)))),
        ("archives", lambda: (nav(page, "Messagerie"), nav(page, re.compile(r"archive", re.I)))),
        ("corbeille", lambda: (nav(page, "Messagerie"), nav(page, re.compile(r"corbeille", re.I)))),
        ("dossier", lambda: nav(page, "Mon dossier")),
        ("historique", lambda: nav(page, "Historique des accès")),
        ("parametres", lambda: nav(page, "Paramètres")),
        ("pharmacie", lambda: nav(page, "Écrire à ma pharmacie")),
        ("suppression-document", lambda: (nav(page, "Mon dossier"),
                                          page.get_by_role("link", name="Supprimer", exact=True).or_(
                                              page.get_by_role("button", name="Supprimer", exact=True)).first.click())),
        ("fermer-mon-espace", lambda: (nav(page, "Paramètres"), nav(page, "Fermer mon espace"))),
    ]
    for name, go in steps:
        url = visit(page, name, problems, go)
        if url:
            urls[name] = url

    def child() -> None:
        nav(page, "Messagerie")
        select = page.get_by_label("Espace", exact=True)
        other = [o for o in select.locator("option").all() if o.get_attribute("selected") is None][0]
        select.select_option(label=other.inner_text().strip())
        submit = select.locator("xpath=ancestor::form[1]").get_by_role("button")
        if submit.count():
            submit.first.click()
        page.wait_for_load_state()
        expect(conversation_link(page, "Vaccins")).to_be_visible()
    urls["introuvable"] = web.url + "/messagerie/reception/987654"
    return urls, problems, child


def test_every_page_is_accessible_and_fits_a_phone(web: Web, contexts: Contexts, shots: Path) -> None:
    web.rd.call(web.rd.store.add_guardian(INS_PENDING, INS_ACTIVE))
    web.deliver(pro_message(subject="Vaccins de l'enfant", message_id="<v-1@test-operator.mssante.fr>",
                            to=f"{INS_PENDING}@patient.mssante.fr"), ins=INS_PENDING)
    mailbox = web.rd.call(web.rd.store.get_mailbox(INS_ACTIVE))
    web.rd.call(web.rd.store.allow_pharmacy(mailbox, PHARMACY))
    web.deliver(pro_message(subject="Suivi termine [FIN]", message_id="<fin-1@test-operator.mssante.fr>",
                            sender=OTHER_PRO, display="Dr Durand"), sender=OTHER_PRO)
    pro_writes(web)
    ctx = contexts.new()
    page = ctx.new_page()
    urls, problems, to_child = tour(web, page)
    anonymous = contexts.new().new_page()
    for name, url in urls.items():
        p = anonymous if name == "connexion" else page
        for size_name, size in (("telephone", PHONE), ("bureau", DESKTOP)):
            p.set_viewport_size(size)
            response = p.goto(url)
            expected = 404 if name == "introuvable" else 200
            if response is None or response.status != expected:
                problems.append(f"{name}: GET {url} answered {response and response.status}, not {expected}")
                continue
            p.wait_for_load_state()
            check_here(p, name, size_name, shots, problems)
    # pages that answer a POST: reached once, checked at both sizes by resizing
    for name, p, go in (("connexion-refusee", anonymous, lambda: refused_login(anonymous, web)),
                        ("reponse-refusee", page, lambda: refused_reply(page)),
                        ("espace-enfant", page, to_child),
                        ("espace-ferme", page, lambda: close_space(page))):
        if visit(p, name, problems, go):
            for size_name, size in (("telephone", PHONE), ("bureau", DESKTOP)):
                p.set_viewport_size(size)
                check_here(p, name, size_name, shots, problems)
    # the space is closed: the session that closed it reads nothing any more
    page.goto(web.url + "/messagerie")
    if page.get_by_role("heading", name="Messagerie", level=1, exact=True).count():
        problems.append("after \"Fermer mon espace\", the same session still shows the Messagerie")
    assert not problems, "\n".join(problems)


def check_here(p: Any, label: str, size_name: str, shots: Path, problems: list[str]) -> None:
    size = p.viewport_size
    at = f"{label} at {size['width']}x{size['height']}"
    p.screenshot(path=str(shots / f"{label}-{size_name}.png"), full_page=True)
    scroll, client = horizontal_overflow(p)
    if scroll > client:
        problems.append(f"{at}: scrolls sideways (scrollWidth {scroll} > clientWidth {client})")
    for v in serious_violations(p):
        problems.append(f"{at}: axe {v}")
    logged_in = label not in ("connexion", "connexion-refusee", "introuvable", "espace-ferme")
    if logged_in and p.get_by_role("button", name="Se déconnecter", exact=True).count() == 0:
        problems.append(f"{at}: no button \"Se déconnecter\"")
    if p.locator("html").get_attribute("lang") != "fr":
        problems.append(f"{at}: <html> has no lang=\"fr\"")


def refused_login(p: Any, web: Web) -> None:
    p.goto(web.url + "/")
    p.get_by_label("Identifiant", exact=True).fill(f"{INS_ACTIVE}@patient.mssante.fr")
    p.get_by_label("Mot de passe", exact=True).fill("pas le bon")
    p.get_by_role("button", name="Se connecter", exact=True).click()
    p.wait_for_load_state()
    expect(p.get_by_label("Identifiant", exact=True)).to_be_visible()


def refused_reply(p: Any) -> None:
    nav(p, "Messagerie")
    open_conversation(p, SUBJECT)
    p.get_by_label("Votre réponse", exact=True).fill("Voici le fichier")
    p.get_by_label("Pièce jointe", exact=True).set_input_files(
        files=[{"name": "programme.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x90\x00" + bytes(200)}])
    p.get_by_role("button", name="Envoyer", exact=True).click()
    p.wait_for_load_state()
    expect(p.get_by_text("programme.exe")).to_be_visible()


def close_space(p: Any) -> None:
    """Last of all: "Fermer mon espace" with the password (the parent's own space)."""
    p.goto(p.url.split("/messagerie")[0] + "/")
    select = p.get_by_label("Espace", exact=True)
    select.select_option(label="Mon espace")
    select.locator("xpath=ancestor::form[1]").get_by_role("button").first.click()
    p.wait_for_load_state()
    nav(p, "Paramètres")
    nav(p, "Fermer mon espace")
    p.get_by_label("Mot de passe", exact=True).fill(PASSWORD)
    p.once("dialog", lambda d: d.accept())  # the page's confirm(), when JavaScript runs
    p.get_by_role("button", name="Fermer mon espace", exact=True).click()
    p.wait_for_load_state()
    expect(p.get_by_role("heading", name="Fermer mon espace", exact=True)).to_have_count(0)


def test_keyboard_only_login_and_reply(web: Web, contexts: Contexts) -> None:
    pro_writes(web)
    page = contexts.page()
    page.goto(web.url + "/")
    tab_to(page, page.get_by_label("Identifiant", exact=True))
    page.keyboard.type(INS_ACTIVE)  # the INS alone is an identifier too
    tab_to(page, page.get_by_label("Mot de passe", exact=True), limit=3)
    page.keyboard.type(PASSWORD)
    tab_to(page, page.get_by_role("button", name="Se connecter", exact=True), limit=3)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Messagerie", level=1, exact=True)).to_be_visible()
    tab_to(page, conversation_link(page, SUBJECT))
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    tab_to(page, page.get_by_label("Votre réponse", exact=True), limit=120)
    page.keyboard.type("Merci, je viendrai mardi.")
    tab_to(page, page.get_by_role("button", name="Envoyer", exact=True), limit=5)
    page.keyboard.press("Enter")
    [got] = web.pro.wait(1, timeout=60)
    assert got.rcpts == [SENDER] and b"Merci, je viendrai mardi." in got.content
