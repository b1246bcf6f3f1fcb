"""SIGHUP applies exactly the keys of relay/core/reloadable.py (each one tested), and names
every other changed key in `reload.needs_restart` while keeping its running value."""
from __future__ import annotations

import hashlib
import imaplib
import re
import shutil
import smtplib
import ssl
from pathlib import Path

import pytest
import structlog
from cryptography.hazmat.primitives.serialization import Encoding
from structlog.testing import capture_logs

from certs.pki import load_ca, make_crl
from relay.core.config import load_config
from relay.core.reloadable import RELOADABLE, changed_keys, needs_restart
from tests.integration.conftest import INS_ACTIVE, INS_PENDING, SENDER, RunningDaemon, message

RCPT = f"{INS_ACTIVE}@patient.mssante.fr"


def set_key(cfg: Path, dotted: str, value: str) -> None:
    """Set `key = value` in its [section] of relay.toml (added when absent)."""
    section, key = dotted.split(".")
    text = cfg.read_text()
    start = text.index(f"[{section}]\n")
    nxt = text.find("\n[", start + 1)
    end = len(text) if nxt < 0 else nxt + 1
    block = text[start:end]
    line = re.compile(rf"^{re.escape(key)} = .*$", re.M)
    block = line.sub(lambda _: f"{key} = {value}", block, count=1) if line.search(block) \
        else block.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n", 1)
    cfg.write_text(text[:start] + block + text[end:])


def _prepare_files(base: Path) -> None:
    """Copies of the files a reloadable key may point to, so each change is a real one."""
    pki = base / "pki"
    for name in ("server.pem", "server.key", "ca.pem"):
        shutil.copy(pki / name, pki / f"reloaded-{name}")
    (pki / "crl.pem").write_bytes(make_crl(load_ca(pki), []).public_bytes(Encoding.PEM))
    shutil.copy(base / "trustlist.xml", base / "reloaded-trustlist.xml")
    digest = hashlib.sha256((base / "trustlist.xml").read_bytes()).hexdigest()
    (base / "trustlist.xml.sha256").write_text(f"{digest}  trustlist.xml\n")


# a new value for each reloadable key (TOML text)
NEW_VALUES = {
    "tls.profile": '"strict"', "tls.cert": '"pki/reloaded-server.pem"', "tls.key": '"pki/reloaded-server.key"',
    "tls.trust_anchors": '"pki/reloaded-ca.pem"', "tls.crls": '["pki/crl.pem"]',
    "trust_list.path": '"reloaded-trustlist.xml"', "trust_list.require_digest": "true",
    "trust_list.max_age_days": "30", "trust_list.url": '"https://listes.example.org/liste.xml"',
    "trust_list.fetch_ca": '"pki/ca.pem"', "mx.max_message_size": "1000000", "mx.max_recipients": "3",
    "mx.max_sessions_per_ip": "7", "mx.timeout": "77", "mx.data_timeout": "78", "mx.shutdown_grace": "9",
    "mx.max_header_field_bytes": "5000", "mx.max_header_fields": "99", "mx.max_header_bytes": "60000",
    "attachments.max_part_bytes": "1000000", "attachments.max_total_bytes": "2000000",
    "attachments.max_parts": "5", "attachments.max_depth": "3", "attachments.zip_max_entries": "4",
    "attachments.zip_max_unpacked_bytes": "5000000", "attachments.zip_max_ratio": "20",
    "imap.max_literal": "100000", "imap.idle_timeout": "1900", "imap.max_sessions_per_ip": "3",
    "imap.max_sessions_per_account": "2", "imap.command_rate": "10", "imap.command_burst": "20",
    "imap.command_timeout": "30", "imap.literal_timeout": "40", "store.min_free_bytes": "1",
    "log.level": '"warning"',
}


def test_every_reloadable_key_has_a_test_value() -> None:
    assert set(NEW_VALUES) == set(RELOADABLE)


@pytest.mark.parametrize("key", sorted(RELOADABLE))
def test_each_reloadable_key_is_applied(relay: RunningDaemon, key: str) -> None:
    cfg = relay.base / "relay.toml"
    _prepare_files(relay.base)
    field = RELOADABLE[key]
    before = getattr(relay.daemon.runtime.config, field)
    set_key(cfg, key, NEW_VALUES[key])
    wanted = getattr(load_config(cfg), field)
    assert wanted != before, key
    saved = structlog.get_config()
    try:
        with capture_logs() as events:
            assert relay.daemon.reload() is True
    finally:
        structlog.configure(**saved)
    assert not [e for e in events if e["event"] == "reload.needs_restart"], events
    assert getattr(relay.daemon.runtime.config, field) == wanted
    # the IMAP front and the stop sequence read the same (new) configuration
    assert relay.daemon.imap.config is relay.daemon.runtime.config
    assert relay.daemon.config is relay.daemon.runtime.config


def test_reloaded_size_and_recipients_apply_to_new_sessions(relay: RunningDaemon) -> None:
    cfg = relay.base / "relay.toml"
    with relay.smtp() as old:
        assert old.esmtp_features["size"] == "26214400"
    set_key(cfg, "mx.max_message_size", "100000")
    set_key(cfg, "mx.max_recipients", "2")
    assert relay.daemon.reload() is True
    with relay.smtp() as s:
        assert s.esmtp_features["size"] == "100000"
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt(RCPT)[0] == 250
        assert s.rcpt(f"{INS_PENDING}@patient.mssante.fr")[0] == 250  # pending mailboxes receive
        assert s.rcpt("postmaster@patient.mssante.fr")[0] == 452  # RFC 5321 §4.5.3.1.10: too many recipients
        s.rset()
        big = message(body="x" * 200_000 + "\r\n")
        with pytest.raises(smtplib.SMTPException):
            s.sendmail(SENDER, [RCPT], big)


def test_reloaded_attachment_limits_refuse_a_message_they_accepted(relay: RunningDaemon) -> None:
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=n{i}.txt"
                    f"\r\n\r\nnote {i}\r\n" for i in range(4))
    raw = message(extra="", body="").replace(b"Content-Type: text/plain; charset=utf-8",
                                             b'Content-Type: multipart/mixed; boundary="b"') \
        + (parts + "--b--\r\n").encode()
    relay.deliver(raw)
    set_key(relay.base / "relay.toml", "attachments.max_parts", "2")
    assert relay.daemon.reload() is True
    with relay.smtp() as s:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail(SENDER, [RCPT], raw.replace(b"Compte rendu", b"Autre"))
    assert refused.value.smtp_code == 554 and b"2 at most" in refused.value.smtp_error


def test_reloaded_imap_sessions_per_ip(relay: RunningDaemon) -> None:
    set_key(relay.base / "relay.toml", "imap.max_sessions_per_ip", "1")
    assert relay.daemon.reload() is True
    first = relay.imap()
    try:
        ctx = ssl.create_default_context(cafile=str(relay.pki("ca.pem")))
        with pytest.raises((imaplib.IMAP4.error, ConnectionError, OSError)):
            second = imaplib.IMAP4_SSL("127.0.0.1", relay.imap_ports[1], ssl_context=ctx, timeout=30)
            second.login(f"{INS_ACTIVE}@patient.mssante.fr", "x")
    finally:
        first.logout()


def test_other_changed_keys_are_named_and_keep_their_running_value(relay: RunningDaemon) -> None:
    cfg = relay.base / "relay.toml"
    set_key(cfg, "server.hostname", '"mx2.patient.mssante.fr"')
    set_key(cfg, "imap.max_line", "4096")
    set_key(cfg, "mx.max_recipients", "5")  # reloadable: applied, not named
    with capture_logs() as events:
        assert relay.daemon.reload() is True
    restart = [e for e in events if e["event"] == "reload.needs_restart"]
    assert len(restart) == 1
    assert restart[0]["keys"] == ["imap.max_line", "server.hostname"]
    rc = relay.daemon.runtime.config
    assert rc.hostname == "mx.patient.mssante.fr" and rc.imap_max_line == 65536
    assert rc.max_recipients == 5
    with relay.smtp() as s:
        assert "mx.patient.mssante.fr" in s.ehlo_resp.decode() and "mx2" not in s.ehlo_resp.decode()
    # a second reload of the same file names them again: they still differ from the running values
    with capture_logs() as events:
        assert relay.daemon.reload() is True
    assert [e["keys"] for e in events if e["event"] == "reload.needs_restart"] == \
        [["imap.max_line", "server.hostname"]]


def test_a_misspelt_key_fails_the_reload_and_keeps_everything(relay: RunningDaemon) -> None:
    cfg = relay.base / "relay.toml"
    set_key(cfg, "mx.max_recipient", "1")
    with capture_logs() as events:
        assert relay.daemon.reload() is False
    failed = [e for e in events if e["event"] == "reload.failed"]
    assert failed and "[mx] max_recipient: unknown key (did you mean max_recipients?)" in failed[0]["error"]
    assert relay.daemon.runtime.config.max_recipients == 100


def test_changed_keys_compares_key_by_key() -> None:
    old = {"mx": {"listen": "a", "max_recipients": 1}, "log": {"level": "info"}}
    new = {"mx": {"listen": "b", "max_recipients": 2}, "web": {"listen": "c"}}
    assert changed_keys(old, new) == ["log.level", "mx.listen", "mx.max_recipients", "web.listen"]
    assert needs_restart(old, new) == ["mx.listen", "web.listen"]
