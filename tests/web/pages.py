"""What a patient does in the webmail, written once for every browser test: only through
the page, finding elements by the accessible names the issue fixes."""
from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

from playwright.sync_api import expect

from tests.integration.conftest import INS_ACTIVE, PASSWORD

MESSAGERIE = "Messagerie"
CLOSED_SENTENCE = "Le professionnel a mis fin à l'échange."
BANNER = "Seul un professionnel de santé peut débuter un échange."


def login(page: Any, base: str, identifier: str = f"{INS_ACTIVE}@patient.mssante.fr",
          password: str = PASSWORD) -> None:
    page.goto(base + "/")
    page.get_by_label("Identifiant", exact=True).fill(identifier)
    page.get_by_label("Mot de passe", exact=True).fill(password)
    page.get_by_role("button", name="Se connecter", exact=True).click()
    expect_messagerie(page)


def expect_messagerie(page: Any) -> None:
    expect(page.get_by_role("heading", name=MESSAGERIE, level=1, exact=True)).to_be_visible()


def nav(page: Any, name: str | re.Pattern[str]) -> None:
    """Follow the navigation link of that name (the first, when a page repeats it)."""
    page.get_by_role("link", name=name).first.click()
    page.wait_for_load_state()


def conversation_link(page: Any, subject: str) -> Any:
    return page.get_by_role("link", name=re.compile(re.escape(subject))).first


def open_conversation(page: Any, subject: str) -> None:
    conversation_link(page, subject).click()
    page.wait_for_load_state()


def row_of(link: Any) -> Any:
    """The list entry (li, tr, article) holding a conversation's link."""
    return link.locator("xpath=ancestor::*[self::li or self::tr or self::article][1]")


def accessible_text(locator: Any) -> str:
    """Text a screen reader gets from an element: its text (visually hidden text
    included), plus aria-label, title and alt attributes inside it."""
    return locator.evaluate("""el => [el.textContent, ...Array.from(el.querySelectorAll('[aria-label],[title],[alt]'))
        .map(e => [e.getAttribute('aria-label'), e.getAttribute('title'), e.getAttribute('alt')].join(' ')),
        el.getAttribute('aria-label') || ''].join(' ')""")


def folded(text: str) -> str:
    """Lower case, accents off, spaces squeezed: to compare with the US-ASCII SMTP texts."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).replace("\u2019", "'")
    return re.sub(r"\s+", " ", text).strip().lower()


def tab_to(page: Any, target: Any, limit: int = 80) -> None:
    """Press Tab until target has the focus (the keyboard-only path a user takes)."""
    handle = target.element_handle()
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("el => document.activeElement === el", handle):
            return
    raise AssertionError(f"Tab never reaches {target} within {limit} presses")


def horizontal_overflow(page: Any) -> tuple[int, int]:
    return page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")


def serious_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe
    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] if isinstance(n["target"][0], str)
                                                                   else str(n["target"]) for n in v["nodes"][:4])
            for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]


def same_origin_urls(page: Any, base: str) -> list[str]:
    """Every URL the page links to or embeds (a, img, iframe, embed, object), same origin only."""
    found = page.evaluate("""() => Array.from(document.querySelectorAll('a[href],img[src],iframe[src],embed[src],object[data]'))
        .map(e => e.getAttribute('href') || e.getAttribute('src') || e.getAttribute('data'))""")
    origin = urlsplit(base).netloc
    urls = []
    for u in found:
        full = urljoin(page.url, u).split("#")[0]
        if urlsplit(full).netloc == origin and full not in urls:
            urls.append(full)
    return urls


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
