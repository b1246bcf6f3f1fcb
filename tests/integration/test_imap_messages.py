"""IMAP on messages delivered by the MX: FETCH, STORE, SEARCH, COPY/MOVE/EXPUNGE,
and the audit of reads (imaplib)."""
from __future__ import annotations

import asyncio
import re

from tests.integration.conftest import INS_ACTIVE, RunningDaemon, message

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _multipart() -> bytes:
    import base64
    b64 = base64.encodebytes(PDF).replace(b"\n", b"\r\n")
    return (b"From: Dr Martin <dr.martin@test-operator.mssante.fr>\r\nTo: <279035121518989@patient.mssante.fr>\r\n"
            b"Subject: =?utf-8?q?R=C3=A9sultats_d=27analyse?=\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
            b"Message-ID: <cr-1@test-operator.mssante.fr>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + "Bonjour, vos résultats sont normaux.\r\n".encode() +
            b'--b1\r\nContent-Type: application/pdf; name="CR.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
            b'Content-Disposition: attachment; filename="CR.pdf"\r\n\r\n' + b64 + b"--b1--\r\n")


def test_fetch_envelope_bodystructure_body(relay: RunningDaemon) -> None:
    relay.deliver(_multipart())
    relay.deliver(message(subject="Rappel de rendez-vous"))
    c = relay.imap()
    c.select("INBOX")
    typ, data = c.fetch("1:*", "(FLAGS ENVELOPE)")
    assert typ == "OK" and len([d for d in data if isinstance(d, tuple) or d.startswith(b"1 (") or
                                d.startswith(b"2 (")]) == 2
    first = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b"=?utf-8?q?R=C3=A9sultats_d=27analyse?=" in first and b'"dr.martin" "test-operator.mssante.fr"' in first
    typ, data = c.fetch("1", "(BODYSTRUCTURE)")
    assert b'("application" "pdf" ("name" "cr.pdf") nil nil "base64"' in data[0].lower()
    # BODY.PEEK does not set \\Seen; BODY[] does (RFC 3501 §6.4.5)
    typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: =?utf-8?q?R=C3=A9sultats_d=27analyse?=\r\n\r\n"
    assert b"\\Seen" not in c.fetch("1", "(FLAGS)")[1][0]
    typ, data = c.fetch("1", "(BODY[])")
    stored = relay.inbox(INS_ACTIVE)[0]
    assert data[0][1] == stored
    assert b"\\Seen" in c.fetch("1", "(FLAGS)")[1][0]
    typ, data = c.fetch("1", "(BINARY.PEEK[2])")
    assert data[0][1] == PDF
    typ, data = c.fetch("1", "(BODY.PEEK[]<0.10>)")
    assert data[0][1] == stored[:10]
    typ, data = c.uid("FETCH", "2", "(UID RFC822.SIZE)")
    assert re.search(rb"UID 2 RFC822.SIZE \d+", data[0])
    c.logout()


def test_store_search_copy_move_expunge(relay: RunningDaemon) -> None:
    for i in range(4):
        relay.deliver(message(subject=f"message {i}", body=f"contenu numero {i}\r\n"))
    c = relay.imap()
    c.select("INBOX")
    typ, data = c.store("1:2", "+FLAGS", "(\\Seen \\Flagged)")
    assert typ == "OK" and len(data) == 2 and b"\\Flagged" in data[0]
    assert c.store("2", "-FLAGS.SILENT", "(\\Flagged)") == ("OK", [None])
    assert c.search(None, "UNSEEN")[1] == [b"3 4"]
    assert c.search(None, "FLAGGED")[1] == [b"1"]
    assert c.search(None, "SUBJECT", '"message 2"')[1] == [b"3"]
    assert c.search(None, "BODY", "numero", "NOT", "SEEN")[1] == [b"3 4"]
    assert c.uid("SEARCH", None, "OR", "FLAGGED", "UID", "4")[1] == [b"1 4"]
    typ, data = c._simple_command("SEARCH", "RETURN", "(COUNT MIN)", "ALL")  # type: ignore[attr-defined]
    assert typ == "OK" and b"COUNT 4" in c.untagged_responses.pop("ESEARCH")[0]
    typ, data = c.copy("1:2", "Archive")
    assert typ == "OK" and re.search(rb"COPYUID \d+ 1:2 1:2", data[0])
    typ, data = c._simple_command("MOVE", "3", "Trash")  # type: ignore[attr-defined]
    assert typ == "OK"
    assert c.select("INBOX")[1] == [b"3"]  # MOVE expunged it
    c.store("1", "+FLAGS", "\\Deleted")
    typ, data = c.expunge()
    assert typ == "OK" and data == [b"1"]
    assert c.select("Archive")[1] == [b"2"] and c.select("Trash")[1] == [b"1"]
    c.select("INBOX")
    c.store("1:*", "+FLAGS", "\\Deleted")
    assert c.uid("EXPUNGE", "4")[0] == "OK"  # RFC 4315: only UID 4
    assert c.select("INBOX")[1] == [b"1"]
    c.close()  # expunges the remaining \\Deleted message silently
    assert c.select("INBOX")[1] == [b"0"]
    c.logout()


def test_every_read_is_audited(relay: RunningDaemon) -> None:
    relay.deliver(message())
    c = relay.imap()
    c.select("INBOX")
    c.fetch("1", "(BODY.PEEK[])")
    c.fetch("1", "(FLAGS)")  # no content read: not a read of the message
    c.logout()
    mbox = relay.call(relay.store.get_mailbox(INS_ACTIVE))

    async def events() -> list:  # type: ignore[type-arg]
        for _ in range(50):
            got = await relay.store.audit_events(mbox.id)
            if any(e.action == "message.read" for e in got):
                return got
            await asyncio.sleep(0.05)
        return await relay.store.audit_events(mbox.id)

    got = relay.call(events())
    reads = [e for e in got if e.action == "message.read"]
    assert len(reads) == 1 and reads[0].actor == "patient" and reads[0].detail.startswith("INBOX")
    assert reads[0].source == "127.0.0.1"
