"""Issue 16 §5: a refused login says why in the log (bad password, inactive mailbox,
throttled), and a guesser learns nothing from the reply."""
from __future__ import annotations

import imaplib
import smtplib
import ssl
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.integration.conftest import INS_ACTIVE, INS_OPPOSED, INS_UNKNOWN, PASSWORD, RunningDaemon


def _imap_login(relay: RunningDaemon, ins: str, password: str) -> str:
    client = relay.imap(login=False)
    try:
        client.login(f"{ins}@patient.mssante.fr", password)
        return "OK"
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        client.shutdown()


def test_each_refusal_is_logged_with_its_reason(relay: RunningDaemon) -> None:
    with capture_logs() as events:
        wrong = _imap_login(relay, INS_ACTIVE, "not the password")
        unknown = _imap_login(relay, INS_UNKNOWN, "not the password")
        inactive = _imap_login(relay, INS_OPPOSED, PASSWORD)
    assert wrong == unknown  # the reply does not say whether the account exists
    assert "AUTHENTICATIONFAILED" in wrong
    assert "CONTACTADMIN" in inactive  # only after the right password
    names = [e["event"] for e in events if e["event"].startswith("auth.")]
    assert names.count("auth.failed") == 2
    assert [e["state"] for e in events if e["event"] == "auth.inactive"] == ["opposed"]
    for e in events:
        if e["event"].startswith("auth."):
            assert e["peer"] == "127.0.0.1" and "ins_hash" in e
            assert INS_ACTIVE not in str(e) and INS_OPPOSED not in str(e)  # INS only hashed


def test_submission_refusal_and_throttle_are_logged(instance: Path) -> None:
    cfg = instance / "relay.toml"
    # no reply delay, a long throttle: the free failures are checked, every later one throttled
    cfg.write_text(cfg.read_text().replace("failure_reply_delay = 1", "failure_reply_delay = 0")
                   .replace("first_delay = 1\n", "first_delay = 600\n"))
    relay = RunningDaemon(cfg).start()
    limits = relay.daemon.runtime.config.auth
    try:
        with capture_logs() as events:
            codes = []
            for _ in range(limits.failures_per_account_source + 1):
                s = smtplib.SMTP("127.0.0.1", relay.daemon.submission_ports[0], timeout=60)
                s.starttls(context=ssl.create_default_context(cafile=str(relay.pki("ca.pem"))))
                with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                    s.login(f"{INS_ACTIVE}@patient.mssante.fr", "guess")
                codes.append(refused.value.smtp_code)
                s.close()
    finally:
        relay.stop()
    failed = [e for e in events if e["event"] == "auth.failed"]
    throttled = [e for e in events if e["event"] == "auth.throttled"]
    # smtplib tries PLAIN then LOGIN: two attempts a round; the free ones are checked,
    # the next ones throttled (and said so in the log only)
    assert len(failed) == limits.failures_per_account_source
    assert throttled and throttled[0]["retry_after"] > 0
    assert 235 not in codes
