"""The webmail in a real browser (issue 11, "Tests (a real browser)").

A real daemon (the integration tests' RunningDaemon) serves the web front on a loopback
port over TLS; professionals write through the real MX with mutual TLS; the patient's
replies leave through the outbound queue to an aiosmtpd peer playing the professional's
operator (the dev instance routes test-operator.mssante.fr there). Playwright drives
Debian's Chromium (/usr/bin/chromium, headless, never a downloaded browser) and finds
every element by the accessible names the issue fixes ("Identifiant", "Se connecter",
"Messagerie" …): those names are the contract, so a test here fails when one changes.

Screenshots go to build/webtests/<test>/ (git-ignored) or $WEBTESTS_OUTPUT."""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import INS_ACTIVE, SENDER, RunningDaemon, seeded_instance
from tests.integration.conftest import seeded_template, template_instance  # noqa: F401 (fixtures)
from tests.integration.test_conversations import ProHandler, pro_mx
from tests.ports import free_port, wait_listening

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
PATIENT = f"{INS_ACTIVE}@patient.mssante.fr"
# Chromium without anything that calls home (the tests run in a namespace with no network)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 375, "height": 667}
DESKTOP = {"width": 1280, "height": 800}
TIMEOUT_MS = 30_000  # the machine is shared and noisy: generous, never a timing assertion


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/web/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


# --- the daemon, its web port and the professional's side --------------------------------


def _set_web_listen(text: str, port: int) -> str:
    """Point web.listen at port, whether the template has a [web] section yet or not."""
    section = re.search(r"^\[web\][^\[]*", text, re.M)
    if section and re.search(r'^listen\s*=\s*"[^"]*"', section.group(0), re.M):
        body = re.sub(r'^listen\s*=\s*"[^"]*"', f'listen = "127.0.0.1:{port}"', section.group(0), count=1,
                      flags=re.M)
        return text[:section.start()] + body + text[section.end():]
    if section:
        return text[:section.end()] + f'listen = "127.0.0.1:{port}"\n' + text[section.end():]
    return text + f'\n[web]\nlisten = "127.0.0.1:{port}"\n'


@dataclass
class Web:
    """A running daemon with its web front, and the professional's operator MX."""

    rd: RunningDaemon
    pro: ProHandler
    instance: Path
    port: int
    sent_ids: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def deliver(self, raw: bytes, ins: str = INS_ACTIVE, sender: str = SENDER) -> None:
        """Through the real MX, STARTTLS with the operator's client certificate."""
        with self.rd.smtp() as s:
            assert s.sendmail(sender, [f"{ins}@patient.mssante.fr"], raw) == {}


@pytest.fixture
def instance(template_instance: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The integration tests' instance (seeded_instance: the seeded store copied; seeded
    from a thread where needed, as Playwright's sync API keeps an event loop running in
    the main thread, where asyncio.run() is refused)."""
    return seeded_instance(tmp_path / "inst", template_instance, request)


@pytest.fixture
def web(instance: Path) -> Iterator[Web]:
    pro_port, web_port = free_port(), free_port()
    config = instance / "relay.toml"
    text = (config.read_text().replace('"127.0.0.1:2626"', f'"127.0.0.1:{pro_port}"')
            .replace("backoff = [60, 300, 900, 1800, 3600, 7200, 14400]", "backoff = [1]"))
    config.write_text(_set_web_listen(text, web_port))
    handler = ProHandler()
    controller = pro_mx(instance / "pki", pro_port, handler)
    rd = RunningDaemon(config).start()
    try:
        if not wait_listening(web_port):
            pytest.fail(f"the daemon does not serve its web front on web.listen 127.0.0.1:{web_port}")
        yield Web(rd, handler, instance, web_port)
    finally:
        rd.stop()
        controller.stop()


# --- mail from the professional -----------------------------------------------------------


def pro_message(subject: str = "Compte rendu de consultation", body: str = "Bonjour,\nVoici le compte rendu.\n",
                message_id: str = "<cr-1@test-operator.mssante.fr>", in_reply_to: str | None = None,
                attachments: tuple[tuple[str, str, bytes], ...] = (), sender: str = SENDER,
                display: str = "Dr Martin", to: str = PATIENT, html: str | None = None) -> bytes:
    """A professional's message (Python's email package, RFC 5322/2045) with attachments
    given as (file name, MIME type, content)."""
    m = EmailMessage()
    m["From"] = f"{display} <{sender}>"
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = message_id
    m["Date"] = format_datetime(__import__("datetime").datetime.now().astimezone())
    if in_reply_to:
        m["In-Reply-To"] = in_reply_to
        m["References"] = in_reply_to
    m.set_content(body)
    if html is not None:
        m.add_alternative(html, subtype="html")
    for name, mime, content in attachments:
        maintype, subtype = mime.split("/")
        m.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


# --- the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed (/usr/bin/chromium): apt-get install chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Contexts:
    """Browser contexts (one per patient: separate cookie jars) closed at the end of the test."""

    def __init__(self, browser: Any):
        self.browser = browser
        self.opened: list[Any] = []

    def new(self, viewport: dict[str, int] = DESKTOP, **options: Any) -> Any:
        ctx = self.browser.new_context(ignore_https_errors=True, locale="fr-FR", viewport=viewport,
                                       accept_downloads=True, **options)
        ctx.set_default_timeout(TIMEOUT_MS)
        ctx.set_default_navigation_timeout(TIMEOUT_MS)
        self.opened.append(ctx)
        return ctx

    def page(self, **options: Any) -> Any:
        return self.new(**options).new_page()

    def close(self) -> None:
        for ctx in self.opened:
            ctx.close()


@pytest.fixture
def contexts(browser: Any) -> Iterator[Contexts]:
    c = Contexts(browser)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    """Where this test's screenshots go (kept after the run, git-ignored)."""
    base = Path(os.environ.get("WEBTESTS_OUTPUT", ROOT / "build" / "webtests"))
    d = base / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    d.mkdir(parents=True, exist_ok=True)
    return d
