"""Fuzz harness for the CDA R2 header reader (dossier_bridge/cda.py) and the content
sniffing of the attachment rules that decides a part is CDA (policy/attachments.py).

The contracts:
- `parse_cda` returns a CdaHeader or raises CdaError (a ValueError), nothing else; its
  INS ids come from recordTarget ids under an INS OID;
- `embedded_document` returns None, (mediaType, bytes) of at most `max_bytes`, or raises
  CdaError;
- `parse_hl7_ts` never raises and returns None or an aware datetime;
- `sniff` never raises, and calls CDA only what `parse_cda` reads as a ClinicalDocument
  root or cannot read as XML at all (a streaming first-element look may accept a
  document that goes bad later: the dossier then refuses it with CdaError).

    python tests/fuzz/fuzz_cda.py -max_total_time=600 /tmp/cda-work
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing import instrumented, main  # noqa: E402

with instrumented("dossier_bridge.cda", "policy.attachments"):
    from dossier_bridge import cda  # noqa: E402
    from policy import attachments  # noqa: E402

MAX_EMBEDDED = 4096


def test_one_input(data: bytes) -> None:
    try:
        header = cda.parse_cda(data)
    except cda.CdaError:
        header = None
    if header is not None:
        assert set(header.ins_ids) <= {ext for _, ext in header.patient_ids}
        if header.effective_time is not None:
            assert header.effective_time.tzinfo is not None
    try:
        found = cda.embedded_document(data, MAX_EMBEDDED)
    except cda.CdaError:
        found = None
    if found is not None:
        media_type, content = found
        assert isinstance(media_type, str) and 0 < len(content) <= MAX_EMBEDDED, len(content)

    kind = attachments.sniff(data)
    if kind is attachments.Kind.CDA:
        # the sniff reads the first element only; the reader must at least agree on it
        # when the whole document is well-formed
        assert header is not None or _not_well_formed(data), data[:200]

    text = data[:64].decode("utf-8", "replace")
    when = cda.parse_hl7_ts(text)
    assert when is None or when.tzinfo is not None
    cda.rpps_from_idnps(text)


def _not_well_formed(data: bytes) -> bool:
    try:
        cda.parse_cda(data)
    except cda.CdaError as exc:
        return str(exc) != "not a CDA document (root is not hl7:ClinicalDocument)"
    return False


DICTIONARY = [b'<ClinicalDocument xmlns="urn:hl7-org:v3">', b"</ClinicalDocument>", b"<recordTarget>",
              b"<patientRole>", b'<id root="1.2.250.1.213.1.4.10" extension="', b'root="1.2.250.1.71.4.2.1"',
              b"<component><nonXMLBody><text", b' representation="B64"', b' mediaType="application/pdf"',
              b' compression="DF"', b"<reference value=", b"<effectiveTime value=\"", b"20240102101010.123+0100",
              b"<!DOCTYPE", b"<!ENTITY", b"&#x", b"<?xml version=\"1.0\" encoding=\"", b"UTF-16", b"\xef\xbb\xbf",
              b"\xff\xfe<\x00", b"xmlns:h=", b"<![CDATA[", b"<title>", b"<author><assignedAuthor>"]

if __name__ == "__main__":
    main(sys.argv, "cda", test_one_input, DICTIONARY)
