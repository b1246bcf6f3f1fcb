"""Issue 18 §5 in a real browser: the patient blocks and unblocks a professional, switches
emergency access off, hides and shows a document, only through the page (accessible
names of the issue), and the new page is axe clean and fits a phone."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from mailbox_store.documents import NewDocument
from tests.integration.conftest import INS_ACTIVE
from tests.web.conftest import DESKTOP, PHONE, Contexts, Web
from tests.web.files import pdf
from tests.web.pages import horizontal_overflow, login, nav, serious_violations

RPPS = "10009876543"
TITLE = "Compte rendu de cardiologie"


def section(page: Any, heading: str) -> Any:
    return page.locator("section").filter(has=page.get_by_role("heading", name=heading, exact=True))


def test_block_unblock_emergency_hide_and_show(web: Web, contexts: Contexts, shots: Path) -> None:
    rd = web.rd
    mb = rd.call(rd.store.require_mailbox(INS_ACTIVE))
    rd.call(rd.store.pro_set(mb, "8" + RPPS, "allow", actor="consent", name="Jeanne Durand"))
    content = pdf(TITLE)
    meta = {"title": TITLE, "filename": "cr.pdf", "mime_type": "application/pdf", "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(), "author": {"id": None, "name": None, "address": None}}
    [doc_id] = rd.call(rd.store.file_documents(mb, [NewDocument("<cr@t>", content, meta)], "mx"))
    page = contexts.new().new_page()
    login(page, web.url)
    nav(page, "Paramètres")
    nav(page, "Accès des professionnels de santé")
    expect(page.get_by_role("heading", name="Accès des professionnels de santé", level=1)).to_be_visible()
    problems: list[str] = []
    for name, size in (("telephone", PHONE), ("bureau", DESKTOP)):
        page.set_viewport_size(size)
        page.screenshot(path=str(shots / f"professionnels-{name}.png"), full_page=True)
        scroll, client = horizontal_overflow(page)
        if scroll > client:
            problems.append(f"{name}: scrolls sideways")
        problems += [f"{name}: axe {v}" for v in serious_violations(page)]
    assert not problems, "\n".join(problems)
    authorised = section(page, "Autorisé(s)")
    expect(authorised).to_contain_text("Jeanne Durand")
    authorised.get_by_role("button", name="Bloquer").click()
    page.wait_for_load_state()
    blocked = section(page, "Bloqué(s)")
    expect(blocked).to_contain_text("Jeanne Durand")
    expect(section(page, "Autorisé(s)")).not_to_contain_text("Jeanne Durand")
    assert rd.call(rd.store.pro_rules(mb)).blocked == {"8" + RPPS}
    blocked.get_by_role("button", name="Débloquer").click()
    page.wait_for_load_state()
    expect(section(page, "Autorisé(s)")).to_contain_text("Jeanne Durand")
    assert rd.call(rd.store.pro_rules(mb)).blocked == frozenset()
    # block someone who never came, by RPPS
    page.get_by_label("Numéro RPPS du professionnel à bloquer").fill("10001112223")
    page.get_by_role("button", name="Bloquer ce professionnel").click()
    page.wait_for_load_state()
    expect(section(page, "Bloqué(s)")).to_contain_text("RPPS 10001112223")
    switch = page.get_by_label("Accès en cas d'urgence", exact=True)
    expect(switch).to_be_checked()
    switch.uncheck()
    page.get_by_role("button", name="Enregistrer", exact=True).click()
    page.wait_for_load_state()
    expect(page.get_by_label("Accès en cas d'urgence", exact=True)).not_to_be_checked()
    assert rd.call(rd.store.pro_rules(mb)).emergency_enabled is False
    nav(page, "Mon dossier")
    item = page.locator("li").filter(has_text=TITLE)
    item.get_by_role("button", name="Masquer").click()
    page.wait_for_load_state()
    item = page.locator("li").filter(has_text=TITLE)
    expect(item.get_by_role("button", name="Afficher")).to_be_visible()
    assert rd.call(rd.store.pro_rules(mb)).hidden == {doc_id}
    problems = [f"dossier: axe {v}" for v in serious_violations(page)]
    assert not problems, "\n".join(problems)
    item.get_by_role("button", name="Afficher").click()
    page.wait_for_load_state()
    expect(page.locator("li").filter(has_text=TITLE).get_by_role("button", name="Masquer")).to_be_visible()
    assert rd.call(rd.store.pro_rules(mb)).hidden == frozenset()
