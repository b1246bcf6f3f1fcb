"""IMAP: LIST (special-use, LIST-STATUS), CREATE/RENAME/DELETE, SUBSCRIBE/LSUB,
STATUS, SELECT/EXAMINE, APPEND (UIDPLUS), with imaplib."""
from __future__ import annotations

import imaplib
import re

import pytest

from tests.integration.conftest import RunningDaemon, message


def _list(c: imaplib.IMAP4) -> dict[str, str]:
    typ, data = c.list()
    assert typ == "OK"
    out = {}
    for line in data:
        m = re.match(rb'\((.*?)\) "/" (.*)', line)
        assert m, line
        out[m.group(2).decode().strip('"')] = m.group(1).decode()
    return out


def test_list_shows_special_use_folders(relay: RunningDaemon) -> None:
    c = relay.imap()
    folders = _list(c)
    assert set(folders) == {"INBOX", "Sent", "Drafts", "Trash", "Archive", "Dossier m&AOk-dical"}
    assert "\\Sent" in folders["Sent"] and "\\Trash" in folders["Trash"] and "\\Archive" in folders["Archive"]
    assert "\\HasNoChildren" in folders["INBOX"]
    typ, data = c._simple_command("LIST", '""', '""')  # type: ignore[attr-defined]
    assert typ == "OK"
    assert c.untagged_responses["LIST"][-1] == b'(\\Noselect) "/" ""'
    c.logout()


def test_create_rename_delete_subscribe(relay: RunningDaemon) -> None:
    c = relay.imap()
    assert c.create("Sant&AOk-/Analyses")[0] == "OK"       # "Santé/Analyses" in modified UTF-7
    folders = _list(c)
    assert "Sant&AOk-/Analyses" in folders and "\\HasChildren" in folders["Sant&AOk-"]
    assert c.create("Sant&AOk-")[0] == "NO"               # already exists
    assert c.rename("Sant&AOk-", "Medical")[0] == "OK"
    assert {"Medical", "Medical/Analyses"} <= set(_list(c))
    assert c.unsubscribe("Medical")[0] == "OK"
    typ, lsub = c.lsub()
    assert not any(b'"Medical"' in x or x.endswith(b" Medical") for x in lsub)
    assert c.delete("Medical")[0] == "NO"                  # has a subfolder
    assert c.delete("Medical/Analyses")[0] == "OK" and c.delete("Medical")[0] == "OK"
    for protected in ("INBOX", "Sent", "Trash"):
        assert c.delete(protected)[0] == "NO"
    assert c.select("Nowhere")[0] == "NO"
    c.logout()


def test_status_select_examine_append(relay: RunningDaemon) -> None:
    relay.deliver(message(subject="un"))
    relay.deliver(message(subject="deux"))
    c = relay.imap()
    typ, data = c.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY SIZE)")
    assert typ == "OK" and b"MESSAGES 2" in data[0] and b"UNSEEN 2" in data[0] and b"UIDNEXT 3" in data[0]
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    assert c.untagged_responses.get("UIDVALIDITY") and c.untagged_responses.get("UNSEEN") == [b"1"]
    typ, data = c.append("Drafts", "(\\Draft \\Seen)", imaplib.Time2Internaldate(1795000000),
                         message(subject="brouillon"))
    assert typ == "OK"
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert m and m.group(2) == b"1"
    c.select("Drafts", readonly=True)
    typ, data = c.fetch("1", "(FLAGS INTERNALDATE)")
    assert b"\\Draft" in data[0] and b"\\Seen" in data[0]
    assert imaplib.Internaldate2tuple(data[0])[:3] == __import__("time").localtime(1795000000)[:3]
    assert c.store("1", "+FLAGS", "\\Flagged")[0] == "NO"   # read-only (EXAMINE)
    assert c.append("Nowhere", None, None, message())[0] == "NO"
    c.logout()


def test_list_extended_status_and_special_use_selection(relay: RunningDaemon) -> None:
    relay.deliver(message())
    c = relay.imap()
    typ, _ = c._simple_command("LIST", "(SPECIAL-USE)", '""', "*", "RETURN", "(STATUS (MESSAGES UNSEEN))")  # type: ignore[attr-defined]
    assert typ == "OK"
    listed = b" ".join(c.untagged_responses.pop("LIST"))
    assert b"INBOX" not in listed and b"\\Sent" in listed
    status = c.untagged_responses.pop("STATUS")
    assert any(b"Sent" in s and b"MESSAGES 0" in s for s in status)
    c.logout()


@pytest.mark.parametrize("cmd", ["CHECK", "EXPUNGE", "CLOSE", "FETCH 1 FLAGS", "UID STORE 1 FLAGS ()"])
def test_selected_only_commands_refused_when_nothing_selected(relay: RunningDaemon, cmd: str) -> None:
    # imaplib checks states itself: talk raw to see what the server answers
    from tests.integration.test_imap_login import _tls_lines, _until_tagged
    from tests.integration.conftest import INS_ACTIVE, PASSWORD
    tls, f = _tls_lines(relay)
    tls.sendall(f'a LOGIN {INS_ACTIVE} "{PASSWORD}"\r\n'.encode())
    _until_tagged(f, b"a")
    tls.sendall(b"b " + cmd.encode() + b"\r\n")
    assert _until_tagged(f, b"b")[-1].startswith(b"b BAD"), cmd
    tls.close()
