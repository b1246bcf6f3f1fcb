"""Issue 15 item 7 through the MX: a package whose METADATA.XML is written as the ANS
examples are (ebRIM elements with xmlns="") is filed; one that yields no document is
delivered and the audit log says why (dossier.not_filed)."""
from __future__ import annotations

from tests.integration.conftest import INS_ACTIVE, RunningDaemon
from tests.integration.test_dossier import docs, mail, send
from tests.unit.test_xdm import biology_entry, ldl_entry, metadata, package
from tests.unit.test_xdm_unqualified import ans_style


def _events(relay: RunningDaemon, action: str) -> list:
    mb = relay.call(relay.store.require_mailbox(INS_ACTIVE))
    return [e for e in relay.call(relay.store.audit_events(mb.id)) if e.action == action]


def test_ans_style_package_is_filed(relay: RunningDaemon) -> None:
    entries = [ldl_entry(), biology_entry()]
    pkg = package(entries, meta=ans_style(metadata(entries)))
    code, text = send(relay, mail((pkg, "application/zip", "IHE_XDM.ZIP"), message_id="<ans-1@test-operator.mssante.fr>"))
    assert code == 250, text
    assert {d.meta["title"] for d in docs(relay)} == {"Lettre de liaison à la sortie de l'établissement de santé",
                                                      "Compte rendu d'examens biologiques"}
    assert _events(relay, "dossier.not_filed") == []


def test_package_without_documents_is_delivered_and_audited(relay: RunningDaemon) -> None:
    empty = metadata([]).replace(b"<rim:ExtrinsicObject", b"<rim:Nothing")
    code, text = send(relay, mail((package([], meta=empty), "application/zip", "IHE_XDM.ZIP"),
                                  message_id="<ans-2@test-operator.mssante.fr>"))
    assert code == 250, text
    assert len(relay.inbox(INS_ACTIVE)) == 1 and docs(relay) == []
    [event] = _events(relay, "dossier.not_filed")
    assert event.detail.startswith("xdm_no_document (IHE_XDM/SUBSET01: no DocumentEntry")
    assert "sha256:" in event.detail
