"""TLS contexts of the MSSanté profile and reading the peer certificate.

MSSanté allows TLS 1.2 with four ECDHE-RSA suites, or TLS 1.3 (DESIGN.md §4); the
strict profile allows only the TLS 1.2 four. The MX asks every client for a
certificate chaining to the IGC-Santé anchors; CRLs are checked for the leaf when
configured.
"""
from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

MSSANTE_TLS12_CIPHERS = ":".join((
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA256",
))
PROFILES = ("default", "strict")


def _apply_profile(ctx: ssl.SSLContext, profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown TLS profile {profile!r} (expected one of {', '.join(PROFILES)})")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2 if profile == "strict" else ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(MSSANTE_TLS12_CIPHERS)  # TLS 1.3 suites are set apart by OpenSSL
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION


def server_context(cert: Path, key: Path, anchors: Path, crls: Sequence[Path] = (),
                   profile: str = "default", require_client_cert: bool = True) -> ssl.SSLContext:
    """Server side of the MX (and, later, submission/IMAP with require_client_cert=False).

    The client certificate is asked for but optional at the TLS layer so that a client
    without one still reaches an SMTP answer (530 5.7.0) it can report; a certificate
    that is presented and does not chain to the anchors (or is revoked) fails the
    handshake, since OpenSSL verifies any certificate the client sends.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_profile(ctx, profile)
    ctx.load_cert_chain(cert, key)
    if require_client_cert:
        _trust(ctx, anchors, crls)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def _trust(ctx: ssl.SSLContext, anchors: Path, crls: Sequence[Path]) -> None:
    """The IGC-Santé anchors, and the CRLs that revoke the peer's certificate."""
    ctx.load_verify_locations(cafile=str(anchors))
    for crl in crls:
        ctx.load_verify_locations(cafile=str(crl))
    if crls:
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def client_context(anchors: Path, cert: Path | None = None, key: Path | None = None,
                   profile: str = "default", crls: Sequence[Path] = ()) -> ssl.SSLContext:
    """Client side (outbound delivery, tests): verify the server against the anchors
    (and the CRLs: a revoked operator gets no mail from us either)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _apply_profile(ctx, profile)
    _trust(ctx, anchors, crls)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def peer_subject(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """RFC 4514 subject DN of the verified peer certificate, most specific RDN first
    (the form of the trust list's DNCertificatOperateur); None without one."""
    if ssl_object.getpeercert() is None or not ssl_object.getpeercert():
        return None  # no certificate, or one that was not verified
    der = ssl_object.getpeercert(binary_form=True)
    if der is None:
        return None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def check_cert_files(cert: Path, key: Path) -> None:
    """Fail early with a clear message when a certificate and key do not load together."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot load certificate {cert} with key {key}: {e}") from e
