"""The webmail's guards seen from a browser (issue 11 §4): a POST without its CSRF token
is refused (403) and does nothing; another patient's message, attachment and document
ids answer 404 like ids that do not exist; the session cookie's flags and rotation; the
security headers."""
from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from policy.recipients import MailboxState
from tests.integration.conftest import PASSWORD_HASH
from tests.web.conftest import Contexts, Web, pro_message
from tests.web.pages import login, nav, open_conversation, same_origin_urls
from tests.web.test_webmail import PDF, SUBJECT, pro_writes

STRANGER = "297122B00100259"


def test_a_post_without_its_csrf_token_is_refused_and_does_nothing(web: Web, contexts: Contexts) -> None:
    pro_writes(web)
    page = contexts.page()
    login(page, web.url)
    open_conversation(page, SUBJECT)
    page.get_by_label("Votre réponse", exact=True).fill("Envoyee sans jeton")
    form = page.get_by_label("Votre réponse", exact=True).locator("xpath=ancestor::form[1]")
    removed = form.evaluate("""f => { const t = Array.from(f.querySelectorAll('input[type=hidden]'))
        .filter(i => /csrf|xsrf|token|jeton/i.test(i.name)); t.forEach(i => i.remove()); return t.length; }""")
    assert removed >= 1, "the reply form carries no CSRF token field"
    with page.expect_response(lambda r: r.request.method == "POST") as response:
        page.get_by_role("button", name="Envoyer", exact=True).click()
    assert response.value.status == 403
    page.wait_for_timeout(2000)
    assert web.pro.received == []
    assert web.rd.call(web.rd.store.queue_items()) == []
    # and a forged cross-site-like POST to the logout form keeps the session
    logout = page.evaluate("""() => { const b = Array.from(document.querySelectorAll('form button'))
        .find(b => b.textContent.trim() === 'Se déconnecter'); return b ? b.form.action : null; }""")
    page.goto(web.url + "/")
    assert logout, "no logout form"
    r = page.request.post(logout, form={})
    assert r.status == 403
    page.goto(web.url + "/")
    expect(page.get_by_role("heading", name="Messagerie", level=1)).to_be_visible()


def stranger_urls(web: Web, contexts: Contexts) -> list[str]:
    """The URLs of another patient's conversation, attachments and dossier documents,
    as their own browser shows them."""
    web.rd.call(web.rd.store.create_mailbox(STRANGER, MailboxState.ACTIVE, PASSWORD_HASH))
    web.deliver(pro_message(subject="Bilan sanguin confidentiel", message_id="<s-1@test-operator.mssante.fr>",
                            to=f"{STRANGER}@patient.mssante.fr",
                            attachments=(("bilan.pdf", "application/pdf", PDF),)), ins=STRANGER)
    page = contexts.page()
    login(page, web.url, identifier=STRANGER)
    own = set(same_origin_urls(page, web.url))
    open_conversation(page, "Bilan sanguin confidentiel")
    urls = [page.url] + [u for u in same_origin_urls(page, web.url) if u not in own]
    nav(page, "Mon dossier")
    urls += [u for u in same_origin_urls(page, web.url) if u not in own and u not in urls]
    assert len(urls) >= 3, urls  # the conversation, the attachment, the document at least
    return urls


def test_another_patients_ids_answer_404(web: Web, contexts: Contexts) -> None:
    # the logged-in patient has no mail at all: whatever the ids of the URLs (global, or
    # numbered per mailbox like IMAP UIDs), none of the stranger's may answer anything but 404
    theirs = stranger_urls(web, contexts)
    ctx = contexts.new()
    page = ctx.new_page()
    login(page, web.url)
    answered = {}
    for url in theirs:
        r = ctx.request.get(url, max_redirects=0)
        answered[url] = r.status
        assert PDF != r.body()
        assert b"Bilan sanguin" not in r.body()
    leaked = {u: s for u, s in answered.items() if s != 404}
    assert not leaked, f"another patient's ids not answered 404: {leaked}"
    # and an id that does not exist answers the same: change the digits of the conversation URL
    ghost = re.sub(r"\d+(?=\D*$)", "987654321", theirs[0])
    assert ghost != theirs[0] and ctx.request.get(ghost, max_redirects=0).status == 404


def test_session_cookie_flags_and_rotation(web: Web, contexts: Contexts) -> None:
    ctx = contexts.new()
    page = ctx.new_page()
    page.goto(web.url + "/")
    before = {c["name"]: c["value"] for c in ctx.cookies()}
    login(page, web.url)
    cookies = ctx.cookies()
    assert cookies, "no session cookie"
    for c in cookies:
        assert c["secure"] and c["httpOnly"] and c["sameSite"] == "Strict", c
    rotated = [c for c in cookies if before.get(c["name"]) == c["value"]]
    assert not rotated, f"cookie not rotated at login: {rotated}"


def test_security_headers(web: Web, contexts: Contexts) -> None:
    page = contexts.page()
    responses: list[Any] = []
    page.on("response", lambda r: responses.append(r) if r.request.resource_type == "document" else None)
    login(page, web.url)
    assert responses
    for r in responses:
        h = r.headers
        csp = h.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, (r.url, csp)
        script = re.search(r"script-src([^;]*)", csp) or re.search(r"default-src([^;]*)", csp)
        assert script and "unsafe-inline" not in script.group(1), (r.url, csp)
        assert h.get("referrer-policy") == "no-referrer", r.url
        assert "max-age=" in h.get("strict-transport-security", ""), r.url
