"""Fuzz harness for the MIME walker (policy/mime.py), the attachment rules that walk it
at delivery (policy/attachments.py: mime_parts, check_message) and the conversation
headers the MX reads from the same bytes (policy/headers.py, policy/conversation.py).

The contracts, as their docstrings state them:
- `mime.parse` never raises; every part's offsets lie inside the message and inside
  its parent, the tree is bounded (MAX_DEPTH, MAX_PARTS); `Part.decoded` raises only
  UnknownCte and never yields more bytes than the body; `Part.text`, `decode_header`,
  `parse_addresses` and `find` never raise.
- `mime_parts` / `check_message` never raise: a list of leaves within the limits, or a
  Decision whose reply line is printable US-ASCII under 512 octets (RFC 5321 §4.5.3.1.5).
- `professional_from_headers` never raises and hands on no surrogate (it would not
  encode into the store).
- `policy.parsed.parse` (the inbound pipeline's one parse) never raises; its leaves and
  their classification are what `mime_parts` / `check_message` give for the same bytes,
  each leaf's byte range decodes to its content, and its facts are small.

    python tests/fuzz/fuzz_mime.py -max_total_time=600 /tmp/mime-work
"""
from __future__ import annotations

import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing import instrumented, main  # noqa: E402

with instrumented("policy.mime", "policy.attachments", "policy.headers", "policy.conversation", "policy.parsed"):
    from policy import attachments, conversation, headers, mime, parsed  # noqa: E402
    from policy.decisions import Decision  # noqa: E402

SMALL = attachments.AttachmentLimits(max_part_bytes=4096, max_total_bytes=8192, max_parts=8, max_depth=3,
                                     zip_max_entries=8, zip_max_unpacked_bytes=65536, zip_max_ratio=100)
DEFAULT = attachments.AttachmentLimits()


def check_decision(d: Decision) -> None:
    line = d.smtp()
    assert 400 <= d.code < 600, d
    assert line.isascii() and line.isprintable(), line
    assert len(line.encode()) <= 510, len(line)
    assert d.status.startswith(str(d.code)[0] + "."), d


def check_tree(root: mime.Part, size: int) -> None:
    assert (root.start, root.end) == (0, size), (root.start, root.end, size)
    count = 0
    stack = [(root, 0, size, 0)]
    while stack:
        part, lo, hi, depth = stack.pop()
        count += 1
        assert lo <= part.start <= part.body_start <= part.end <= hi, (lo, part.start, part.body_start, part.end, hi)
        assert depth <= mime.MAX_DEPTH + 1, depth
        assert not (part.children and part.message is not None)
        for child in part.children:
            stack.append((child, part.body_start, part.end, depth + 1))
        if part.message is not None:
            stack.append((part.message, part.body_start, part.end, depth + 1))
        # what IMAP FETCH and SEARCH do with a part
        try:
            decoded = part.decoded()
            assert len(decoded) <= part.size, (len(decoded), part.size)
        except mime.UnknownCte:
            pass
        part.text()
        for f in part.fields[:20]:
            mime.decode_header(f.value)
        for name in ("From", "To", "Cc", "Reply-To"):
            value = part.get(name)
            if value is not None:
                mime.parse_addresses(value.decode("utf-8", "surrogateescape"))
        part.param("charset")
    # each entity is counted once, plus at most one empty placeholder per multipart
    assert count <= 2 * mime.MAX_PARTS + 1, count


def check_headers(data: bytes) -> None:
    msg = conversation.professional_from_headers(headers.parse_headers(data))
    # (`mes` stays raw: it only feeds closes_message, never the store)
    for text in (msg.subject, msg.message_id or "", *msg.in_reply_to, *msg.references,
                 *msg.from_addresses, *msg.reply_to):
        text.encode("utf-8")  # a surrogate here would fail to be stored
    assert len(msg.in_reply_to) <= conversation.MAX_MSG_IDS and len(msg.references) <= conversation.MAX_MSG_IDS
    effects = conversation.professional_effects(msg, lambda _domain: True, sender_ok=lambda _domain: True)
    assert all(c.isascii() for c in effects.correspondents), effects.correspondents
    for text in (effects.thread or "", effects.closed_message or ""):
        text.encode("utf-8")
    headers.without_fields(data, {"bcc", "received"})


def check_parsed(data: bytes, limits: attachments.AttachmentLimits,
                 parts: list[attachments.Part] | Decision) -> None:
    one = parsed.parse(data, limits)
    if isinstance(parts, Decision):
        assert one.parts == parts and one.attachments == parts, (one.parts, parts)
    else:
        assert one.parts == tuple(parts)
        for p in parts:
            if p.span is not None:
                assert mime.decode_cte(data[p.span[0]:p.span[1]], p.encoding) == p.content
        found = attachments.check_message(parts, limits)
        assert one.attachments == (found if isinstance(found, Decision) else tuple(found))
    facts = one.facts(test_address=True)
    assert facts.head == headers.header_block(data) and isinstance(facts.test_request, bool)
    facts.subject.encode("utf-8")
    for name, value in facts.headers.raw_items():
        name.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape")


def test_one_input(data: bytes) -> None:
    root = mime.parse(data)
    check_tree(root, len(data))
    for numbers in ((1,), (1, 1), (2, 1), tuple(b % 4 for b in data[:4])):
        mime.find(root, numbers)
    check_headers(data)

    limits = SMALL if zlib.crc32(data) & 1 else DEFAULT
    parts = attachments.mime_parts(data, limits)
    check_parsed(data, limits, parts)
    if isinstance(parts, Decision):
        check_decision(parts)
        assert parts.rule == "mime_structure", parts
        return
    assert len(parts) <= limits.max_parts, len(parts)
    assert all(p.depth <= limits.max_depth for p in parts)
    # leaves are disjoint spans of the message, and decoding never grows them
    assert sum(len(p.content) for p in parts) <= len(data)
    found = attachments.check_message(parts, limits)
    if isinstance(found, Decision):
        check_decision(found)
    else:
        assert all(isinstance(a.kind, attachments.Kind) for a in found)
        assert sum(len(a.part.content) for a in found) <= limits.max_total_bytes


DICTIONARY = [
    b"\r\n", b"\r\n\r\n", b"\n\n", b"--", b"--b\r\n", b"\r\n--b--\r\n", b"Content-Type: ", b"multipart/mixed",
    b"multipart/digest", b"message/rfc822", b"message/global", b"text/plain", b"application/pdf",
    b"application/zip", b"; boundary=b", b'; boundary="b b"', b"; name*0=", b"; filename*=utf-8''",
    b"Content-Transfer-Encoding: base64", b"quoted-printable", b"x-uuencode", b"Content-Disposition: attachment",
    b"MIME-Version: 1.0", b"=?utf-8?B?", b"=?iso-8859-1?Q?", b"?=", b"charset=", b"From: ", b"Reply-To: ",
    b"Message-ID: <", b"In-Reply-To: ", b"References: ", b"Subject: [FIN]", b"X-MSS-MES: FIN", b"@", b"<", b">",
    b"(", b")", b'"', b"%PDF-", b"\x89PNG\r\n\x1a\n", b"PK\x03\x04", b"MZ", b"<ClinicalDocument", b"<html",
]

if __name__ == "__main__":
    main(sys.argv, "mime", test_one_input, DICTIONARY)
