"""Issue 15 item 4: a document filed at delivery is located by the byte range of its
encoded body in the stored (decrypted) message, not by MIME part number; documents
filed before ranges existed ("part:N") are still read."""
from __future__ import annotations

import hashlib

import pytest

import dossier_bridge.dossier as dossier_module
from dossier_bridge.dossier import locate, read_document
from policy.attachments import AttachmentLimits
from policy.mime import decode_cte
from tests.integration.conftest import INS_ACTIVE, RunningDaemon
from tests.integration.test_dossier import docs, mail, send
from tests.unit.test_attachments import pdf_bytes
from tests.unit.test_xdm import biology_entry, ldl_entry, package


def test_documents_are_read_back_by_byte_range(relay: RunningDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    pdf = pdf_bytes()
    pkg = package([ldl_entry(), biology_entry()])
    raw = mail((pdf, "application/pdf", "cr.pdf"), (pkg, "application/zip", "IHE_XDM.ZIP"),
               message_id="<ranges-1@test-operator.mssante.fr>")
    assert send(relay, raw)[0] == 250
    [stored] = relay.inbox(INS_ACTIVE)
    filed = {d.meta["filename"] or d.meta["title"]: d for d in docs(relay)}
    cr = filed["cr.pdf"]
    where = dict(item.split(":", 1) for item in cr.locator.split("|"))
    start, end = (int(x) for x in where["at"].split("-"))
    # the range is in the stored message (trace headers in front), not in what was sent
    assert decode_cte(stored[start:end], where["cte"]) == pdf
    # reading no longer walks the MIME tree: a renumbering could not orphan a document
    def no_walk(*args: object) -> None:
        raise AssertionError("the MIME tree was walked to find a document")

    monkeypatch.setattr(dossier_module, "mime_parts", no_walk)
    mb = relay.call(relay.store.require_mailbox(INS_ACTIVE))
    for doc in filed.values():
        _, content = relay.call(read_document(relay.store, mb, doc.id, "test", "", AttachmentLimits()))
        assert hashlib.sha256(content).hexdigest() == doc.meta["sha256"]
    assert len(filed) == 3


def test_a_locator_by_part_number_is_still_read() -> None:
    pdf = pdf_bytes()
    raw = mail((pdf, "application/pdf", "cr.pdf"))
    assert locate(raw, "part:2", AttachmentLimits()) == pdf
