"""The conversation page keeps its messages' views by sealed blob id (relay/web/
viewcache.py): a second opening neither decrypts nor parses them, still shows the
same page, and still audits the read; a copy in another folder shows its own UID."""
from __future__ import annotations

import pytest

from mailbox_store import pages as pages_module
from relay.web import pages_mail
from tests.integration.conftest import INS_ACTIVE, OPERATOR_DOMAIN, SENDER, RunningDaemon
from tests.integration.test_web import audit, logged_in

pytestmark = pytest.mark.filterwarnings("error::aiohttp.web_exceptions.NotAppKeyWarning")


def _msg(n: int, body: str, reply_to: str | None = None) -> bytes:
    thread = f"In-Reply-To: {reply_to}\r\nReferences: {reply_to}\r\n" if reply_to else ""
    return (f"From: Dr Martin <{SENDER}>\r\nTo: <{INS_ACTIVE}@patient.mssante.fr>\r\nSubject: Suivi\r\n"
            f"Message-ID: <suivi{n}@{OPERATOR_DOMAIN}>\r\n{thread}MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


async def test_a_second_opening_uses_the_kept_views_and_is_audited(relay: RunningDaemon,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    relay.deliver(_msg(1, "Premier message du suivi."))
    relay.deliver(_msg(2, "Second message du suivi.", reply_to=f"<suivi1@{OPERATOR_DOMAIN}>"))
    assert relay.daemon.web is not None
    views = relay.daemon.web.web.views
    parsed: list[int] = []
    real = pages_mail._view_and_root

    def counting(uid: int, raw: bytes, limits: object):  # type: ignore[no-untyped-def]
        parsed.append(uid)
        return real(uid, raw, limits)

    monkeypatch.setattr(pages_mail, "_view_and_root", counting)
    opened: list[int] = []
    real_open = pages_module.open_blob

    def counting_open(*args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(1)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(pages_module, "open_blob", counting_open)
    client = await logged_in(relay)
    try:
        status, first, _ = await client.get("/messagerie/reception/2")
        assert status == 200 and "Premier message du suivi." in first and "Second message du suivi." in first
        assert sorted(parsed) == [1, 2] and len(views) == 2 and opened == [1]
        status, second, _ = await client.get("/messagerie/reception/2")
        assert status == 200 and "Premier message du suivi." in second and "Second message du suivi." in second
        assert sorted(parsed) == [1, 2]  # nothing parsed again
        assert opened == [1]  # the opened message was left sealed: its view was kept
        reads = [e for e in audit(relay, INS_ACTIVE) if e.action == "message.read"]
        assert len(reads) == 2  # every opening is audited, kept view or not
        imap = relay.imap()
        try:
            imap.select("INBOX")
            assert imap.uid("COPY", "2", "Archive")[0] == "OK"
        finally:
            imap.logout()
        status, archived, _ = await client.get("/messagerie/archives/1")  # the copy: same blob, UID 1 there
        assert status == 200 and "Second message du suivi." in archived
        assert sorted(parsed) == [1, 2] and opened == [1]
        assert "/messagerie/archives/1" in archived
    finally:
        await client.close()
