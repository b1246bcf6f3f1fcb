"""relay/daemon/tlsevents.py: reasons of a failed handshake, the TLS 1.2 client certificate read
from the clear part of the handshake, and the asyncio members the hook relies on."""
from __future__ import annotations

import asyncio.sslproto
import inspect
import ssl

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certs.pki import _name, issue, load_ca
from relay.daemon import tlsevents
from relay.daemon.tlsevents import REASONS, ObservedSSLProtocol, client_certificate, reason_of


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    e = ssl.SSLCertVerificationError(1, "certificate verify failed")
    e.verify_code, e.verify_message = code, message
    return e


def _ssl_error(reason: str) -> ssl.SSLError:
    e = ssl.SSLError(1, reason)
    e.reason = reason  # type: ignore[misc]
    return e


@pytest.mark.parametrize("error,reason", [
    (_verify_error(20, "unable to get local issuer certificate"), "unknown_ca"),
    (_verify_error(10, "certificate has expired"), "certificate_expired"),
    (_verify_error(23, "certificate revoked"), "certificate_revoked"),
    (_verify_error(3, "unable to get certificate CRL"), "crl_unavailable"),
    (_verify_error(65, "something new"), "certificate_invalid"),
    (_ssl_error("PEER_DID_NOT_RETURN_A_CERTIFICATE"), "no_client_certificate"),
    (_ssl_error("NO_SHARED_CIPHER"), "no_shared_cipher"),
    (_ssl_error("UNSUPPORTED_PROTOCOL"), "protocol_version"),
    (_ssl_error("HTTP_REQUEST"), "not_tls"),
    (_ssl_error("TLSV1_ALERT_UNKNOWN_CA"), "client_refused_certificate"),
    (_ssl_error("TLSV1_ALERT_DECODE_ERROR"), "peer_alert"),
    (_ssl_error("SOMETHING_ODD"), "protocol_error"),
    (ConnectionResetError, "connection_closed"),  # asyncio passes the class at EOF
    (TimeoutError(), "timeout"),
    (RuntimeError("x"), "protocol_error"),
])
def test_reasons_are_a_fixed_set(error: BaseException, reason: str) -> None:
    got, detail = reason_of(error)
    assert got == reason and got in REASONS
    assert "\n" not in detail


def _record(handshake: bytes) -> bytes:
    return bytes([22, 3, 3]) + len(handshake).to_bytes(2, "big") + handshake


def test_client_certificate_is_read_from_a_tls12_certificate_message(dev_instance) -> None:  # type: ignore[no-untyped-def]
    ca = load_ca(dev_instance / "pki")
    leaf = issue(ca, _name("mail.example.mssante.fr", "Exemple", "000000000000009"),
                 ("mail.example.mssante.fr",), server=False, client=True).cert
    der = leaf.public_bytes(Encoding.DER)
    entry = len(der).to_bytes(3, "big") + der
    body = len(entry).to_bytes(3, "big") + entry
    message = bytes([11]) + len(body).to_bytes(3, "big") + body
    hello = bytes([1]) + (4).to_bytes(3, "big") + b"abcd"
    # split over two records, as a client may
    flight = _record(hello + message[:100]) + _record(message[100:]) + bytes([20, 3, 3, 0, 1, 1])
    got = client_certificate(flight)
    assert got is not None and got.subject == leaf.subject and got.issuer == ca.cert.subject
    assert client_certificate(bytes([23, 3, 3, 0, 5]) + b"xxxxx") is None  # TLS 1.3: encrypted
    assert client_certificate(_record(bytes([11, 0, 0, 9]) + b"\x00\x00\x06\x00\x00\x03abc")) is None
    assert client_certificate(b"\x16\x03") is None


def test_the_asyncio_members_the_hook_overrides_still_exist() -> None:
    base = asyncio.sslproto.SSLProtocol if asyncio.sslproto.SSLProtocol is not ObservedSSLProtocol \
        else ObservedSSLProtocol.__mro__[1]
    for name in ("_on_handshake_complete", "_check_handshake_timeout", "buffer_updated"):
        assert callable(getattr(base, name, None)), f"asyncio.sslproto.SSLProtocol.{name} is gone"
    source = inspect.getsource(base)
    for member in ("self._ssl_buffer_view", "self._state", "self._transport", "self._server_side",
                   "SSLProtocolState.DO_HANDSHAKE"):
        assert member in source, f"asyncio.sslproto.SSLProtocol no longer uses {member}"
    tlsevents.install()
    assert asyncio.sslproto.SSLProtocol is ObservedSSLProtocol
