"""A failed TLS handshake, on any front, is one JSON event and one counter increment.

Every TLS connection the daemon serves (MX and submission STARTTLS through aiosmtpd,
IMAP STARTTLS through StreamWriter.start_tls, implicit TLS on IMAPS, submissions and
the webmail through loop.create_server) is an `asyncio.sslproto.SSLProtocol`, built by
name at connection time. `install()` puts a subclass in its place that reports the
handshake's failure, so one hook covers the six fronts and any added later; the front
is named from the listening port the daemon registered (`register`).

Event `tls.handshake_failed`: front, peer, reason (a short fixed word, also the
metric's label: the label set stays bounded whatever peers send), detail (OpenSSL's
reason or verification message), and the client certificate's subject and issuer when
it was seen. A client certificate travels in clear only up to TLS 1.2 (RFC 5246
§7.4.6); after a failed verification OpenSSL does not hand it to Python, so the first
bytes of the handshake are kept (at most HANDSHAKE_KEEP) and its Certificate message
read from them. With TLS 1.3 it is encrypted (RFC 8446 §4.4.2): no subject then.

Relies on SSLProtocol's private members `_on_handshake_complete`,
`_check_handshake_timeout`, `buffer_updated`, `_ssl_buffer_view`, `_state` and
`_transport` (CPython 3.11-3.13): tests/unit/test_tlsevents.py fails loudly if they go.

Why the daemon stays on asyncio's own event loop (issue 12 §3, 2026-12-06): uvloop's
loop saved about 15% of the daemon's CPU per IMAP operation under imaptest's stress
(bench/imap_cpu_per_op.sh, two rounds alternated: 1.17 and 1.19 ms on asyncio's loop,
0.95 and 1.03 ms on uvloop's; 992 and 965 against 1,193 and 1,098 operations/s), but
uvloop builds its SSL protocol in C, never by this module's name: no failed handshake
was reported on any front (tests/integration/test_tls_events.py failed). Both cannot
be had without a hook of uvloop's own.
"""
from __future__ import annotations

import asyncio.sslproto
import ssl
from typing import Any

import structlog
from cryptography import x509
from prometheus_client import Counter

log = structlog.get_logger("relay.tls")

FAILURES = Counter("mssante_tls_handshake_failures_total", "TLS handshakes that failed, by front and reason",
                   ["front", "reason"])
# a client's flight up to its Certificate (hello + a leaf and an intermediate: ~5 KB);
# bounded per handshake in progress, freed when it ends
HANDSHAKE_KEEP = 16 * 1024
_fronts: dict[int, str] = {}

# X509_V_ERR_* (openssl/x509_vfy.h) -> reason
_VERIFY = {2: "unknown_ca", 18: "unknown_ca", 19: "unknown_ca", 20: "unknown_ca", 21: "unknown_ca",
           9: "certificate_not_yet_valid", 10: "certificate_expired", 23: "certificate_revoked",
           3: "crl_unavailable", 11: "crl_unavailable", 12: "crl_unavailable"}
# OpenSSL reason strings -> reason
_SSL = {"PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_client_certificate",
        "NO_SHARED_CIPHER": "no_shared_cipher", "NO_SUITABLE_SIGNATURE_ALGORITHM": "no_shared_cipher",
        "UNSUPPORTED_PROTOCOL": "protocol_version", "VERSION_TOO_LOW": "protocol_version",
        "TLSV1_ALERT_PROTOCOL_VERSION": "protocol_version", "NO_PROTOCOLS_AVAILABLE": "protocol_version",
        "HTTP_REQUEST": "not_tls", "WRONG_VERSION_NUMBER": "not_tls", "UNKNOWN_PROTOCOL": "not_tls",
        "PACKET_LENGTH_TOO_LONG": "not_tls", "RECORD_LAYER_FAILURE": "not_tls",
        # the client refused our certificate (RFC 5246 §7.2.2 alerts)
        "TLSV1_ALERT_UNKNOWN_CA": "client_refused_certificate",
        "SSLV3_ALERT_BAD_CERTIFICATE": "client_refused_certificate",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "client_refused_certificate"}
REASONS = frozenset({*_VERIFY.values(), *_SSL.values(), "certificate_invalid", "peer_alert",
                     "connection_closed", "timeout", "protocol_error"})


def register(ports: dict[str, int]) -> None:
    """Front name -> listening port, for the fronts of a running daemon."""
    for name, port in ports.items():
        if port:
            _fronts[port] = name


def reason_of(error: BaseException | type[BaseException]) -> tuple[str, str]:
    """(reason, detail) of a handshake failure."""
    if isinstance(error, type):  # SSLProtocol passes the class ConnectionResetError at EOF
        error = error()
    if isinstance(error, ssl.SSLCertVerificationError):
        code = getattr(error, "verify_code", 0) or 0
        return _VERIFY.get(code, "certificate_invalid"), str(getattr(error, "verify_message", "") or "")
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError)):
        return "connection_closed", "the peer closed the connection during the handshake"
    if isinstance(error, (TimeoutError, ConnectionAbortedError)):
        return "timeout", "the handshake took too long"
    if isinstance(error, ssl.SSLError):
        name = str(getattr(error, "reason", "") or "")
        if name in _SSL:
            return _SSL[name], name
        if name.startswith(("TLSV1_ALERT_", "SSLV3_ALERT_", "TLSV13_ALERT_")):
            return "peer_alert", name
        return "protocol_error", name or type(error).__name__
    return "protocol_error", type(error).__name__


def client_certificate(flight: bytes) -> x509.Certificate | None:
    """The first certificate of a TLS <= 1.2 Certificate message in the client's bytes
    (RFC 5246 §6.2.1 records, §7.4 handshake messages), or None."""
    handshake = bytearray()
    i = 0
    while i + 5 <= len(flight):
        kind, length = flight[i], int.from_bytes(flight[i + 3:i + 5], "big")
        if kind != 22:  # handshake records only; a ChangeCipherSpec ends the clear part
            break
        handshake += flight[i + 5:i + 5 + length]
        i += 5 + length
    j = 0
    while j + 4 <= len(handshake):
        msg_type, length = handshake[j], int.from_bytes(handshake[j + 1:j + 4], "big")
        body = bytes(handshake[j + 4:j + 4 + length])
        if msg_type == 11 and len(body) >= 6:  # Certificate: list length, then length + DER
            first = int.from_bytes(body[3:6], "big")
            try:
                return x509.load_der_x509_certificate(body[6:6 + first])
            except ValueError:
                return None
        j += 4 + length
    return None


def _peer_and_port(transport: Any) -> tuple[str, int]:
    if transport is None:
        return "?", 0
    peer = transport.get_extra_info("peername") or ("?",)
    local = transport.get_extra_info("sockname") or ("", 0)
    return str(peer[0]), int(local[1]) if len(local) > 1 else 0


def report(front: str, peer: str, error: BaseException | type[BaseException], flight: bytes = b"") -> None:
    reason, detail = reason_of(error)
    FAILURES.labels(front, reason).inc()
    fields: dict[str, str] = {}
    cert = client_certificate(flight) if flight else None
    if cert is not None:
        fields = {"cert_subject": cert.subject.rfc4514_string(), "cert_issuer": cert.issuer.rfc4514_string()}
    log.info("tls.handshake_failed", front=front, peer=peer, reason=reason, detail=detail, **fields)


class ObservedSSLProtocol(asyncio.sslproto.SSLProtocol):  # type: ignore[misc,name-defined]
    _flight: bytearray | None = None
    _reported = False

    def buffer_updated(self, nbytes: int) -> None:
        if self._server_side and self._state == asyncio.sslproto.SSLProtocolState.DO_HANDSHAKE:
            if self._flight is None:
                self._flight = bytearray()
            room = HANDSHAKE_KEEP - len(self._flight)
            if room > 0:
                self._flight += self._ssl_buffer_view[:min(nbytes, room)]
        else:
            self._flight = None
        super().buffer_updated(nbytes)

    def _failed(self, error: BaseException | type[BaseException]) -> None:
        if self._reported or not getattr(self, "_server_side", False):
            return  # our own outgoing connections (delivery) report their own failures
        self._reported = True
        if not self._flight and reason_of(error)[0] == "connection_closed":
            return  # closed before a ClientHello (a TCP health check): no handshake was tried
        try:
            peer, port = _peer_and_port(self._transport)
            report(_fronts.get(port, f"port {port}"), peer, error, bytes(self._flight or b""))
        except Exception as e:  # never let reporting break the connection's teardown
            log.warning("tls.report_failed", error=type(e).__name__)
        self._flight = None

    def _on_handshake_complete(self, handshake_exc: Any) -> None:
        if handshake_exc is not None:
            self._failed(handshake_exc)
        else:
            self._flight = None
        super()._on_handshake_complete(handshake_exc)

    def _check_handshake_timeout(self) -> None:
        if self._state == asyncio.sslproto.SSLProtocolState.DO_HANDSHAKE:
            self._failed(TimeoutError())
        super()._check_handshake_timeout()


def install() -> None:
    """Every SSLProtocol asyncio builds from now on is observed (idempotent)."""
    asyncio.sslproto.SSLProtocol = ObservedSSLProtocol  # type: ignore[misc]
