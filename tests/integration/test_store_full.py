"""Issue 10 item 6 on a real full disk: the store lives on a small tmpfs that the test
mounts in a private mount namespace, fills, then frees.

`test_full_disk_answers_in_codes_and_loses_nothing` re-runs this file under
`unshare -m` (needs root), where `test_inside_a_private_mount_namespace` mounts the
tmpfs and plays the scenario:
1. before: messages by MX, a reply by submission, an IMAP session reading INBOX;
2. disk full: /healthz 503 and the free-bytes gauge low; MX MAIL 452 4.3.1; submission
   AUTH/MAIL clean codes only; IMAP APPEND and CREATE a tagged NO [LIMIT], a new IMAP
   LOGIN a tagged reply, FETCH of the stored mail still works;
3. a little space, above store.min_free_bytes but less than a message needs:
   submission and MX DATA 452 4.3.1 (SQLite's SQLITE_FULL, classified);
4. space back: /healthz 200, everything works, and everything stored before is there,
   byte for byte; SQLite's integrity_check says ok.
"""
from __future__ import annotations

import base64
import errno
import imaplib
import json
import os
import re
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import (INS_ACTIVE, PASSWORD, SENDER, RunningDaemon, message,
                                        seed_mailboxes)
from tests.integration.test_conversations import pro_writes, reply

IN_NAMESPACE = "MSSANTE_TEST_IN_MOUNT_NAMESPACE"
REPO = Path(__file__).resolve().parents[2]
RCPT = f"{INS_ACTIVE}@patient.mssante.fr"
MIN_FREE = 2 * 1024 * 1024
CLEAN_REPLY = re.compile(r"^[2-5]\d\d [245]\.\d{1,3}\.\d{1,3} [\x20-\x7e]+$")
INTERNALS = ("Error:", "OperationalError", "sqlite", "sqlalche", "Traceback", "INSERT")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (run as root, or in a container where unshare -m works)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare(1) or mount(8) is not installed"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -m is not permitted here: {probe.stderr.strip()}"
    return None


@pytest.mark.skipif(os.environ.get(IN_NAMESPACE) == "1", reason="this is the outer half")
def test_full_disk_answers_in_codes_and_loses_nothing(tmp_path: Path) -> None:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, IN_NAMESPACE: "1"}
    run = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-m", "pytest", "-q", "-x",
         "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'inner'}",
         f"{Path(__file__).resolve()}::test_inside_a_private_mount_namespace"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-8000:] + run.stderr[-4000:]


# --- the inner half -------------------------------------------------------------------------------

def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(filler: Path, leave: int) -> None:
    """Grow `filler` until about `leave` bytes are free on its filesystem (0: full)."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1024 * 1024, 64 * 1024, 4096, 1):
            block = b"\0" * size
            while _free(filler.parent) - size >= leave:
                try:
                    os.write(fd, block)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


def _health(rd: RunningDaemon) -> tuple[int, dict]:  # type: ignore[type-arg]
    url = f"http://127.0.0.1:{rd.daemon.admin_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _gauge(rd: RunningDaemon) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{rd.daemon.admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^mssante_store_free_bytes (\S+)$", text, re.M)
    assert m, "no mssante_store_free_bytes gauge"
    return float(m.group(1))


def _clean(code: int, text: bytes) -> str:
    line = f"{code} {text.decode('ascii', 'replace')}"
    assert CLEAN_REPLY.match(line) and not any(w in line for w in INTERNALS), line
    return line


def _big_text(mb: float) -> str:
    line = "Compte rendu detaille, ligne de texte ordinaire.\r\n"
    return line * int(mb * 1024 * 1024 / len(line))


@pytest.mark.skipif(os.environ.get(IN_NAMESPACE) != "1",
                    reason="runs only inside the private mount namespace the test above creates")
def test_inside_a_private_mount_namespace(template_instance: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(disk)], check=True)
    inst = disk / "inst"
    shutil.copytree(template_instance, inst, ignore=shutil.ignore_patterns("S.gpg-agent*"))
    cfg = inst / "relay.toml"
    cfg.write_text(re.sub(r"(?m)^min_free_bytes = .*$", f"min_free_bytes = {MIN_FREE}", cfg.read_text()))
    seed_mailboxes(cfg)
    filler = disk / "filler"
    rd = RunningDaemon(cfg).start()
    imap = None
    try:
        # 1. before: three messages in, one reply out, a reader on INBOX
        pro_writes(rd)
        before = [message(subject=f"Resultat {i}", body=f"Bonjour,\r\nResultat {i}.\r\n") for i in range(2)]
        for raw in before:
            rd.deliver(raw)
        with rd.submission() as s:
            assert s.sendmail(RCPT, [SENDER], reply()) == {}
        inbox_before = rd.inbox(INS_ACTIVE)
        sent_before = rd.call(rd.store.messages(INS_ACTIVE, "Sent"))
        assert len(inbox_before) == 3 and len(sent_before) == 1
        imap = rd.imap()
        assert imap.select("INBOX")[0] == "OK"
        assert _health(rd)[0] == 200

        # 2. the disk is full
        _fill(filler, 0)
        status, health = _health(rd)
        assert status == 503 and health["checks"]["store_space"]["ok"] is False, health
        assert _gauge(rd) < MIN_FREE
        with rd.smtp() as s:
            code, text = s.mail(SENDER)
            assert (code, text[:5]) == (452, b"4.3.1"), _clean(code, text)
        with rd.submission(login=False) as s:
            token = base64.b64encode(f"\0{RCPT}\0{PASSWORD}".encode()).decode()
            code, text = s.docmd("AUTH", f"PLAIN {token}")
            _clean(code, text)
            assert code in (235, 454), (code, text)  # logged in, or "temporary failure"
            if code == 235:
                code, text = s.mail(RCPT)
                assert (code, text[:5]) == (452, b"4.3.1"), _clean(code, text)
        typ, data = imap.append("INBOX", None, None, message(subject="appended"))
        assert typ == "NO" and re.match(rb"\[(LIMIT|OVERQUOTA)\] ", data[0]), data
        typ, data = imap.create("Nouveau")
        assert typ == "NO" and data[0].startswith(b"[LIMIT] "), data
        typ, fetched = imap.fetch("1:3", "(BODY.PEEK[])")
        assert typ == "OK" and [f[1] for f in fetched if isinstance(f, tuple)] == inbox_before
        assert imap.noop()[0] == "OK"
        fresh = rd.imap(login=False)
        try:
            fresh.login(RCPT, PASSWORD)  # a login that cannot record itself: a tagged answer
        except imaplib.IMAP4.error as e:
            assert not isinstance(e, imaplib.IMAP4.abort), e
            assert not any(w in str(e) for w in INTERNALS), e
        fresh.logout()

        # 3. some space, above the threshold, less than a message needs: DATA fails
        filler.unlink()
        _fill(filler, MIN_FREE + 512 * 1024)
        assert _health(rd)[0] == 200
        with rd.submission() as s:
            with pytest.raises(smtplib.SMTPDataError) as exc:
                s.sendmail(RCPT, [SENDER], reply(body=_big_text(4.5)))
            assert (exc.value.smtp_code, exc.value.smtp_error[:5]) == (452, b"4.3.1"), exc.value
            _clean(exc.value.smtp_code, exc.value.smtp_error)
        filler.unlink()
        _fill(filler, MIN_FREE + 512 * 1024)
        with rd.smtp() as s:
            with pytest.raises(smtplib.SMTPDataError) as exc:
                s.sendmail(SENDER, [RCPT], message(subject="big", body=_big_text(20)))
            assert (exc.value.smtp_code, exc.value.smtp_error[:5]) == (452, b"4.3.1"), exc.value
            _clean(exc.value.smtp_code, exc.value.smtp_error)

        # 4. space is back: everything works again, nothing was lost
        filler.unlink()
        status, health = _health(rd)
        assert status == 200, health
        after = message(subject="apres", body="Bonjour,\r\nApres.\r\n")
        rd.deliver(after)
        with rd.submission() as s:
            assert s.sendmail(RCPT, [SENDER], reply(subject="Re: apres")) == {}
        typ, _ = imap.append("INBOX", None, None, message(subject="appended"))
        assert typ == "OK"
        assert imap.create("Nouveau")[0] == "OK"
        inbox = rd.inbox(INS_ACTIVE)
        assert inbox[:3] == inbox_before and len(inbox) == 5
        sent = rd.call(rd.store.messages(INS_ACTIVE, "Sent"))
        assert [m.uid for m in sent[:1]] == [m.uid for m in sent_before] and len(sent) == 2
        imap.logout()
        imap = None
    finally:
        if imap is not None:
            try:
                imap.logout()
            except (imaplib.IMAP4.error, OSError):
                pass
        rd.stop()
    db = rd.config.store_url.split("///", 1)[1]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
