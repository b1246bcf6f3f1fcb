"""The private members of aiosmtpd and the dkimpy internals we build on (issue 16 item 7).

relay/smtp/{engine,mx,submission}.py subclass aiosmtpd's SMTP and use members that are
not its public API; certs/dkim.py signs and verifies through dkimpy's internals. A new
release may rename or reshape any of them without notice, and the failure would show as
a subtle misbehaviour at run time. pyproject.toml caps both majors and requirements/*.lock
pins the tested versions; this test is the alarm for the upgrade that stays inside the cap:
each assertion names the member and the module that needs it.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest


def _params(fn: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _major(dist: str) -> int:
    return int(version(dist).split(".")[0])


def test_majors_within_the_caps_of_pyproject() -> None:
    assert _major("aiosmtpd") == 1, f"aiosmtpd {version('aiosmtpd')}: relay/smtp was written for 1.x"
    assert _major("dkimpy") == 1, f"dkimpy {version('dkimpy')}: certs/dkim.py was written for 1.x"


# member -> (parameters it must take, who needs it)
AIOSMTPD_METHODS: dict[str, tuple[list[str], str]] = {
    "_getaddr": (["self", "arg"], "mx.MxSMTP._getaddr: the null reverse-path <>"),
    "_call_handler_hook": (["self", "command", "args"], "engine.RelaySMTP.smtp_DATA: the DATA hook"),
    "_set_post_data_state": (["self"], "engine.RelaySMTP.smtp_DATA: reset after DATA"),
    "_reset_timeout": (["self", "duration"], "engine.RelaySMTP.smtp_DATA: idle timeout per data block"),
    "check_helo_needed": (["self", "helo"], "engine.RelaySMTP.smtp_DATA"),
    "check_auth_needed": (["self", "caller_method"], "engine.RelaySMTP.smtp_DATA"),
    "auth_LOGIN": (["self", "_", "args"], "submission.SubmissionSMTP.auth_LOGIN"),
    "auth_PLAIN": (["self", "_", "args"], "submission.SubmissionSMTP.auth_PLAIN"),
    "smtp_AUTH": (["self", "arg"], "submission.SubmissionSMTP.smtp_AUTH"),
    "smtp_STARTTLS": (["self", "arg"], "mx.MxSMTP.smtp_STARTTLS: no second negotiation"),
    "smtp_HELO": (["self", "hostname"], "mx.MxSMTP.smtp_HELO"),
    "smtp_EHLO": (["self", "hostname"], "mx.MxSMTP.smtp_EHLO"),
    "push": (["self", "status"], "engine.RelaySMTP.push: enhanced codes, one-line replies"),
    "handle_exception": (["self", "error"], "engine.RelaySMTP.handle_exception: no traceback to a client"),
    "connection_made": (["self", "transport"], "mx/submission: sessions per address, implicit TLS"),
    "connection_lost": (["self", "error"], "mx.MxSMTP.connection_lost: release the session slot"),
}


@pytest.mark.parametrize("name", sorted(AIOSMTPD_METHODS))
def test_aiosmtpd_smtp_methods(name: str) -> None:
    from aiosmtpd.smtp import SMTP
    params, user = AIOSMTPD_METHODS[name]
    member = getattr(SMTP, name, None)
    assert callable(member), f"aiosmtpd SMTP.{name} is gone; needed by relay/smtp/{user}"
    assert _params(member) == params, \
        f"aiosmtpd SMTP.{name}{inspect.signature(member)} changed; relay/smtp/{user} calls it as {params}"
    if name.startswith(("smtp_", "auth_", "_call", "_set", "push", "handle_exception")) \
            and name not in ("_set_post_data_state",):
        assert inspect.iscoroutinefunction(member), f"aiosmtpd SMTP.{name} is no longer a coroutine"


def test_aiosmtpd_names_imported() -> None:
    import aiosmtpd.smtp as smtp
    for name in ("MISSING", "SMTP", "TLSSetupException", "syntax", "AuthResult", "LoginPassword",
                 "Envelope", "Session"):
        assert hasattr(smtp, name), f"aiosmtpd.smtp.{name} is gone (imported by relay/smtp)"
    assert {"success", "handled", "message", "auth_data"} <= set(inspect.signature(smtp.AuthResult).parameters), \
        "aiosmtpd AuthResult fields changed (submission.SubmissionSMTP._verify builds them)"
    assert {"login", "password"} <= set(inspect.signature(smtp.LoginPassword).parameters)
    assert smtp.TLSSetupException.__mro__[1] is not object  # an Exception subclass we catch


async def test_aiosmtpd_session_state_set_by_the_engine() -> None:
    """Attributes our subclasses read on a live session (set by __init__ and connection_made)."""
    from aiosmtpd.smtp import SMTP
    server = SMTP(object())
    for name, user in (("_original_transport", "mx/submission connection_made: first layer or TLS layer"),
                       ("_tls_protocol", "mx.smtp_STARTTLS, submission implicit TLS"),
                       ("_handler_coroutine", "mx: refusing a session without 220; engine.push"),
                       ("event_handler", "engine: refusals through the handler"),
                       ("data_size_limit", "engine.smtp_DATA: SIZE bound of the chunked reader")):
        assert hasattr(server, name), f"aiosmtpd SMTP().{name} is gone; needed by relay/smtp/{user}"
    assert server._original_transport is None and server._tls_protocol is None  # our "first layer" test
    made = inspect.getsource(SMTP.connection_made)
    for name in ("_handler_coroutine", "session"):
        assert f"self.{name} =" in made, \
            f"aiosmtpd SMTP.connection_made no longer sets self.{name} (relay/smtp reads it)"
    # set when the client connects: relay/smtp/data.read_dot_data reads DATA from this StreamReader
    connected = inspect.getsource(SMTP._cb_client_connected)
    assert "self._reader = reader" in connected and \
        _params(SMTP._cb_client_connected) == ["self", "reader", "writer"], \
        "aiosmtpd SMTP._reader (the client's StreamReader) changed; relay/smtp/engine.py reads DATA from it"


def test_dkimpy_internals() -> None:
    import dkim
    import dkim.crypto
    from dkim.canonicalization import CanonicalizationPolicy
    from dkim.util import parse_tag_value

    assert {"message", "signature_algorithm", "linesep", "minkey"} <= set(_params(dkim.DKIM.__init__)), \
        "dkim.DKIM() arguments changed (certs/dkim.sign and _Verifier pass them)"
    assert _params(dkim.DKIM.gen_header)[:6] == ["self", "fields", "include_headers", "canon_policy",
                                                  "header_name", "pk"], \
        "dkim.DKIM.gen_header changed (certs/dkim.sign builds the signature with it)"
    for method in ("verify_sig", "verify_sig_process"):
        assert _params(getattr(dkim.DKIM, method)) == ["self", "sig", "include_headers", "sig_header", "dnsfunc"], \
            f"dkim.DKIM.{method} changed (certs/dkim._Verifier overrides or calls it)"
    assert _params(dkim.evaluate_pk) == ["name", "s"], "dkim.evaluate_pk changed (certs/dkim._Verifier)"
    for name in ("NaClNotFoundError", "ValidationError"):
        assert issubclass(getattr(dkim, name), Exception), f"dkim.{name} is gone (certs/dkim._Verifier)"
    assert callable(dkim.crypto.parse_pem_private_key)
    assert callable(parse_tag_value) and parse_tag_value(b"v=1; k=rsa") == {b"v": b"1", b"k": b"rsa"}
    canon = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    assert canon.canonicalize_body(b"a  b \r\n\r\n") == b"a b\r\n", "dkimpy's relaxed body canonicalization"
    signer = dkim.DKIM(b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n", linesep=b"\r\n")
    # certs/dkim.sign reads the parsed headers and body, and sets the hasher gen_header uses
    assert [tuple(h) for h in signer.headers] == [(b"From", b" a@example.org\r\n"), (b"Subject", b" x\r\n")], \
        "dkim.DKIM().headers changed shape (certs/dkim.sign reads it)"
    assert signer.body == b"body\r\n", "dkim.DKIM().body changed (certs/dkim.sign hashes it)"
    assert "self.hasher" in inspect.getsource(dkim.DKIM.gen_header), \
        "dkim.DKIM.gen_header no longer hashes with self.hasher (certs/dkim.sign sets it)"
