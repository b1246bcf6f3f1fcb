"""MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469) with an imaplib connection sending
LITERAL+ literals: several messages all or none, messages built from text and from
parts of stored messages, and the refusals (BADURL, TRYCREATE)."""
from __future__ import annotations

import re

from tests.integration.conftest import RunningDaemon
from tests.integration.test_imap_condstore import raw


def lit(text: str) -> str:
    data = text.replace("\n", "\r\n")
    return "{%d+}\r\n%s" % (len(data.encode()), data)


def bodies(c, folder: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    c.select(folder)
    typ, data = c.fetch("1:*", "(BODY.PEEK[])")
    return [d[1] for d in data if isinstance(d, tuple)]


def test_multiappend_stores_all_or_none(relay: RunningDaemon) -> None:
    c = relay.imap()
    assert b"MULTIAPPEND" in c.capability()[1][0].split()
    m1, m2 = "Subject: un\n\ncorps 1\n", "Subject: deux\n\ncorps 2\n"
    lines, tagged = raw(c, f"APPEND Drafts (\\Seen) {lit(m1)} {lit(m2)}")
    assert re.match(rb"OK \[APPENDUID \d+ 1:2\]", tagged)
    assert bodies(c, "Drafts") == [m1.replace("\n", "\r\n").encode(), m2.replace("\n", "\r\n").encode()]
    # the second message is empty: neither is stored (RFC 3502 §6.3.11)
    lines, tagged = raw(c, f"APPEND Drafts {lit(m1)} {{0+}}\r\n")
    assert tagged.startswith(b"NO")
    assert len(bodies(c, "Drafts")) == 2
    assert raw(c, f"APPEND Nulle-part {lit(m1)} {lit(m2)}")[1].startswith(b"NO [TRYCREATE]")
    c.logout()


def test_catenate_text_and_url_parts(relay: RunningDaemon) -> None:
    c = relay.imap()
    assert b"CATENATE" in c.capability()[1][0].split()
    first = "From: dr@test-operator.mssante.fr\nSubject: source\n\nTexte d'origine\n"
    lines, tagged = raw(c, f"APPEND Drafts CATENATE (TEXT {lit(first)})")
    uidvalidity, uid = re.match(rb"OK \[APPENDUID (\d+) (\d+)\]", tagged).groups()  # type: ignore[union-attr]
    url = f"/Drafts;uidvalidity={uidvalidity.decode()}/;uid={uid.decode()}"
    lines, tagged = raw(c, f'APPEND Archive CATENATE (URL "{url}/;section=HEADER" TEXT ' + lit("Reponse\n") + ')')
    assert tagged.startswith(b"OK [APPENDUID")
    lines, tagged = raw(c, 'APPEND Archive CATENATE (TEXT ' + lit("Subject: copie\n\n") + f' URL "{url}/;section=TEXT")')
    assert tagged.startswith(b"OK")
    lines, tagged = raw(c, f'APPEND Archive CATENATE (URL "{url}/;partial=0.4" TEXT ' + lit(": x\n\nfin\n") + ')')
    assert tagged.startswith(b"OK")
    assert bodies(c, "Archive") == [
        b"From: dr@test-operator.mssante.fr\r\nSubject: source\r\n\r\nReponse\r\n",
        b"Subject: copie\r\n\r\nTexte d'origine\r\n",
        b"From: x\r\n\r\nfin\r\n"]
    # a stale UIDVALIDITY, a missing UID, a folder of someone else: BADURL, nothing stored
    for bad in (f"/Drafts;uidvalidity=12345/;uid={uid.decode()}", "/Drafts/;uid=999",
                "/Other%20Users/279035121518989/INBOX/;uid=1", "imap://host", "Drafts/;uid=1"):
        lines, tagged = raw(c, 'APPEND Archive CATENATE (TEXT ' + lit("a: b\n\n") + f' URL "{bad}")')
        assert tagged.startswith(b"NO [BADURL"), (bad, tagged)
    assert len(bodies(c, "Archive")) == 3
    # MULTIAPPEND of two CATENATE messages
    lines, tagged = raw(c, f'APPEND Archive CATENATE (URL "{url}") CATENATE (TEXT ' + lit("Subject: z\n\nz\n") + ')')
    assert re.match(rb"OK \[APPENDUID \d+ 4:5\]", tagged)
    c.logout()
