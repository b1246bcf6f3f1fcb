"""Fuzz harness for the IHE_XDM.ZIP reader (dossier_bridge/xdm.py) and the zip inspection
of the attachment rules (policy/attachments.py: check_zip, sniff, classify).

Random bytes rarely make a zip whose CRCs hold, so half the inputs are used as they are
(the first byte even), and the other half describe a package that is then written with
zipfile: entry names, methods, sizes and contents (METADATA.XML included) come from the
fuzzer, so the hostile part is what a sender really controls.

The contracts:
- `read_xdm` returns an XdmPackage or raises XdmError, nothing else; what it returns is
  bounded by the limits (documents <= zip_max_entries, their bytes <= zip_max_unpacked_bytes),
  every document's path is a safe relative name inside IHE_XDM/;
- `check_zip`, `sniff` and `classify` never raise; a refusal is a 554 5.6.1 (or 552 5.3.4)
  whose reply line is printable US-ASCII under 512 octets.

    python tests/fuzz/fuzz_xdm.py -max_total_time=600 /tmp/xdm-work
"""
from __future__ import annotations

import io
import sys
import warnings
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing import instrumented, main  # noqa: E402

with instrumented("dossier_bridge.xdm", "policy.attachments"):
    from dossier_bridge.xdm import XdmError, XdmPackage, read_xdm  # noqa: E402
    from policy import attachments  # noqa: E402
    from policy.decisions import Decision  # noqa: E402

LIMITS = attachments.AttachmentLimits(max_part_bytes=1 << 20, max_total_bytes=1 << 20, max_parts=8,
                                      max_depth=3, zip_max_entries=8, zip_max_unpacked_bytes=256 * 1024,
                                      zip_max_ratio=100)
# zipfile warns about the duplicate names the fuzzer writes on purpose
warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
NAMES = ["IHE_XDM/SUBSET01/METADATA.XML", "IHE_XDM/SUBSET01/DOC0001.XML", "IHE_XDM/SUBSET01/DOC0002.PDF",
         "ihe_xdm/subset01/metadata.xml", "IHE_XDM/SUBSET02/METADATA.XML", "INDEX.HTM", "README.TXT",
         "IHE_XDM/SUBSET01/../../x", "/etc/passwd", "C:x", "a\\b", "IHE_XDM/", "[Content_Types].xml",
         "word/document.xml", "word/vbaProject.bin", "IHE_XDM/SUBSET01/a.exe"]


def build(data: bytes) -> bytes:
    """A zip written by zipfile from a description: per entry, one byte picks the name
    (or takes the next bytes as one), one the method, two the content's length, then
    the content."""
    out = io.BytesIO()
    pos = 1
    with zipfile.ZipFile(out, "w") as z:
        seen: set[str] = set()
        while pos + 4 <= len(data) and len(seen) < 12:
            pick, method, length = data[pos], data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
            pos += 4
            if pick < 0xF0:
                name = NAMES[pick % len(NAMES)]
            else:
                name = data[pos:pos + (pick & 0x0F) + 1].decode("utf-8", "replace")
                pos += (pick & 0x0F) + 1
            content = data[pos:pos + length]
            pos += length
            if not name or name in seen:
                continue
            seen.add(name)
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if method & 1 else zipfile.ZIP_STORED
            if method & 2:
                content = content * 200  # something that compresses well
            if method & 4:
                info.external_attr = 0o120777 << 16  # a symbolic link
            z.writestr(info, content)
    return out.getvalue()


def check_decision(d: Decision) -> None:
    line = d.smtp()
    assert line.isascii() and line.isprintable() and len(line) <= 510, line
    assert (d.code, d.status) in ((554, "5.6.1"), (552, "5.3.4")), d


def test_one_input(data: bytes) -> None:
    content = data[1:] if not data or data[0] % 2 == 0 else build(data)

    refusal = attachments.check_zip(content, LIMITS)
    if refusal is not None:
        check_decision(refusal)
    attachments.sniff(content, LIMITS)
    part = attachments.Part("2", "IHE_XDM.ZIP", "application/zip", "attachment", content, 1)
    found = attachments.classify(part, LIMITS)
    if isinstance(found, Decision):
        check_decision(found)

    try:
        package = read_xdm(content, LIMITS)
    except XdmError:
        return
    assert isinstance(package, XdmPackage)
    assert len(package.documents) <= LIMITS.zip_max_entries
    assert sum(len(d.content) for d in package.documents) <= LIMITS.zip_max_unpacked_bytes
    for doc in package.documents:
        parts = doc.path.split("/")
        assert parts[0].casefold() == "ihe_xdm" and ".." not in parts and "" not in parts[1:], doc.path


DICTIONARY = [b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x07", b"PK\x07\x08", b"IHE_XDM/",
              b"SUBSET01/", b"METADATA.XML", b"<rim:Slot name=\"URI\">", b"<rim:Value>", b"</rim:Value>",
              b"ExtrinsicObject", b"urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1", b"../", b"\x00\x00\x00\x00",
              b"\xff\xff\xff\xff", b"\x08\x00", b"<!DOCTYPE", b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\">"]

if __name__ == "__main__":
    main(sys.argv, "xdm", test_one_input, DICTIONARY)
