"""Issue 15 item 7: real XDM packages whose METADATA.XML declares ebRIM elements with
an empty namespace (`<ExtrinsicObject xmlns="">`, as the ANS's example packages of
ansforge TestContenuCDA do) are read by local name; a package that yields no document
says why."""
from __future__ import annotations

import re

from dossier_bridge.dossier import SourceMessage, candidates, for_recipient
from dossier_bridge.xdm import read_xdm
from policy.attachments import Attachment, Kind, Part, classify
from tests.unit.test_xdm import (LIMITS, LDL_SES, biology_entry, ldl_entry, metadata, package)


def ans_style(meta: bytes) -> bytes:
    """Each ExtrinsicObject rewritten as the ANS examples write it: `xmlns=""` on the
    element, its children unprefixed (so in no namespace either)."""
    text = meta.decode()

    def unqualify(match: re.Match[str]) -> str:
        body = match.group(0).replace("<rim:", "<").replace("</rim:", "</")
        return body.replace("<ExtrinsicObject ", '<ExtrinsicObject xmlns="" ', 1)

    out = re.sub(r"<rim:ExtrinsicObject .*?</rim:ExtrinsicObject>", unqualify, text, flags=re.S)
    assert out.count('<ExtrinsicObject xmlns=""') == text.count("<rim:ExtrinsicObject ") > 0
    return out.encode()


def test_ans_style_metadata_yields_its_documents_and_metadata() -> None:
    entries = [ldl_entry(), biology_entry()]
    qualified = read_xdm(package(entries), LIMITS)
    unqualified = read_xdm(package(entries, meta=ans_style(metadata(entries))), LIMITS)
    assert [d.path for d in unqualified.documents] == [d.path for d in qualified.documents]
    ldl = unqualified.documents[0]
    assert ldl.content == LDL_SES
    # the nested classifications, slots and identifiers were read too
    assert ldl.title == qualified.documents[0].title == "Lettre de liaison à la sortie de l'établissement de santé"
    assert ldl.type_code == qualified.documents[0].type_code and ldl.type_code is not None
    assert ldl.patient_id == qualified.documents[0].patient_id and ldl.patient_id is not None
    assert ldl.authors == qualified.documents[0].authors and ldl.authors
    assert ldl.submission_set_id == "SubmissionSet01"
    assert unqualified.problems == qualified.problems


def _attachment(pkg: bytes) -> Attachment:
    att = classify(Part("2", "IHE_XDM.ZIP", "application/zip", "attachment", pkg, 1), LIMITS)
    assert isinstance(att, Attachment) and att.kind is Kind.XDM
    return att


SRC = SourceMessage("<m@test-operator.mssante.fr>", None, "dr.martin@test-operator.mssante.fr", None, {})


def test_a_package_without_any_document_entry_says_why() -> None:
    empty = metadata([]).replace(b"<rim:ExtrinsicObject", b"<rim:Nothing")
    cands = candidates([_attachment(package([], meta=empty))], SRC, LIMITS)
    assert not isinstance(cands, type(None)) and isinstance(cands, list)
    docs, skipped = for_recipient(cands, "279035121518989", SRC)
    assert docs == []
    [why] = skipped
    assert why.reason.startswith("xdm_no_document (IHE_XDM/SUBSET01: no DocumentEntry")


def test_a_package_whose_entries_are_all_skipped_says_why() -> None:
    # an entry with no URI slot: the reader skips it, the package files nothing
    entries = [ldl_entry(uri=None)]
    pkg = package(entries, meta=metadata(entries))
    cands = candidates([_attachment(pkg)], SRC, LIMITS)
    assert isinstance(cands, list)
    docs, skipped = for_recipient(cands, "279035121518989", SRC)
    assert docs == [] and len(skipped) == 1
    assert skipped[0].reason.startswith("xdm_no_document (DocumentEntry 'Document01': no URI slot")
