"""Development PKI that imitates IGC-Santé, written by `mssante-relay init`.

Never for production: real deployments use certificates issued by the ANS IGC-Santé.
RSA keys, because the four TLS 1.2 suites MSSanté allows are all ECDHE-RSA.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OPERATOR_DOMAIN = "test-operator.mssante.fr"
SERVER_NAMES = ("mx.patient.mssante.fr", "localhost", "127.0.0.1")
OPERATOR_NAMES = (f"mail.{OPERATOR_DOMAIN}", "localhost", "127.0.0.1")


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


def _name(cn: str, o: str, ou: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
             x509.NameAttribute(NameOID.ORGANIZATION_NAME, o)]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def make_ca(cn: str, org: str, days: int = 3650) -> Issued:
    key = _key()
    name = _name(cn, org, "IGC-Sante TEST")
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key)


def issue(ca: Issued, subject: x509.Name, names: tuple[str, ...], server: bool, client: bool,
          days: int = 825) -> Issued:
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
             ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=True, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))
    return Issued(cert, key)


def make_crl(ca: Issued, revoked: list[x509.Certificate], days: int = 30) -> x509.CertificateRevocationList:
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
         .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=days)))
    for c in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(c.serial_number)
            .revocation_date(now - dt.timedelta(minutes=1)).build())
    return b.sign(ca.key, hashes.SHA256())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> None:
    """Create a 0600 file (keys never readable by others, even for an instant).
    An existing file is removed first: O_TRUNC would keep its old, maybe wider, mode."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True)
class DevPki:
    operator_subject: str  # RFC 4514 form, as written in the trust list


def write_dev_pki(pki_dir: Path) -> DevPki:
    """Write ca.pem, server.pem/.key, operator.pem/.key, untrusted.pem/.key (+ untrusted-ca.pem)."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca = make_ca("AC IGC-Sante TEST Racine", "ASIP-SANTE TEST")
    server = issue(ca, _name("mx.patient.mssante.fr", "Mon espace sante TEST", "patient.mssante.fr"),
                   SERVER_NAMES, server=True, client=True)
    operator = issue(ca, _name(f"mail.{OPERATOR_DOMAIN}", "Operateur de test MSSante", "000000000000001"),
                     OPERATOR_NAMES, server=True, client=True)
    other_ca = make_ca("Untrusted TEST CA", "Not IGC-Sante")
    untrusted = issue(other_ca, _name(f"mail.{OPERATOR_DOMAIN}", "Operateur de test MSSante", "000000000000001"),
                      OPERATOR_NAMES, server=False, client=True)
    (pki_dir / "ca.pem").write_bytes(cert_pem(ca.cert))
    write_private(pki_dir / "ca.key", key_pem(ca.key))  # lets tests and ops issue more test certs
    for stem, it in (("server", server), ("operator", operator), ("untrusted", untrusted)):
        (pki_dir / f"{stem}.pem").write_bytes(cert_pem(it.cert))
        write_private(pki_dir / f"{stem}.key", key_pem(it.key))
    (pki_dir / "untrusted-ca.pem").write_bytes(cert_pem(other_ca.cert))
    return DevPki(operator.cert.subject.rfc4514_string())


def load_ca(pki_dir: Path) -> Issued:
    cert = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return Issued(cert, key)
