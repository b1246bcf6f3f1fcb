"""Issue 15 item 4: documents filed before byte ranges ("part:N" locators) are given
their range by the daemon at start (dossier_bridge/relocate.py), the content unchanged."""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

from sqlalchemy import update

from dossier_bridge.dossier import read_document
from dossier_bridge.relocate import relocate_documents
from mailbox_store.models import Document
from policy.attachments import AttachmentLimits
from tests.integration.conftest import INS_ACTIVE, RunningDaemon
from tests.integration.test_dossier import docs, mail, send
from tests.unit.test_attachments import pdf_bytes
from tests.unit.test_xdm import biology_entry, ldl_entry, package

RANGE = re.compile(r"\|at:\d+-\d+\|cte:")


def _as_before(rd: RunningDaemon) -> None:
    """Every locator written the way it was before ranges: "part:N[|xdm:...]"."""
    async def rewrite() -> None:
        def job(conn):  # type: ignore[no-untyped-def]
            for doc in conn.execute(Document.__table__.select()).all():
                legacy = re.sub(r"\|at:\d+-\d+\|cte:[a-z0-9-]+", "", doc.locator)
                conn.execute(update(Document).where(Document.id == doc.id).values(locator=legacy))
            return None, []
        await rd.store.writer.submit(job)

    rd.call(rewrite())


def test_old_locators_get_their_byte_range(relay: RunningDaemon) -> None:
    pkg = package([ldl_entry(), biology_entry()])
    raw = mail((pdf_bytes(), "application/pdf", "cr.pdf"), (pkg, "application/zip", "IHE_XDM.ZIP"),
               message_id="<relocate-1@test-operator.mssante.fr>")
    assert send(relay, raw)[0] == 250
    _as_before(relay)
    before = {d.id: d for d in docs(relay)}
    assert len(before) == 3 and not any(RANGE.search(d.locator) for d in before.values())
    assert relay.call(relocate_documents(relay.store, AttachmentLimits())) == 3
    after = {d.id: d for d in docs(relay)}
    mb = relay.call(relay.store.require_mailbox(INS_ACTIVE))
    for doc_id, doc in after.items():
        assert RANGE.search(doc.locator), doc.locator
        assert doc.locator.split("|")[0] == before[doc_id].locator.split("|")[0]  # same part
        _, content = relay.call(read_document(relay.store, mb, doc_id, "test", "", AttachmentLimits()))
        assert hashlib.sha256(content).hexdigest() == doc.meta["sha256"]
    # nothing left to do: a second pass rewrites nothing
    assert relay.call(relocate_documents(relay.store, AttachmentLimits())) == 0


def test_the_daemon_relocates_at_start(relay: RunningDaemon, instance: Path) -> None:
    assert send(relay, mail((pdf_bytes(), "application/pdf", "cr.pdf"),
                            message_id="<relocate-2@test-operator.mssante.fr>"))[0] == 250
    _as_before(relay)
    relay.stop()
    again = RunningDaemon(instance / "relay.toml").start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(RANGE.search(d.locator) for d in docs(again)):
            time.sleep(0.1)
        [doc] = docs(again)
        assert RANGE.search(doc.locator), doc.locator
    finally:
        again.stop()
