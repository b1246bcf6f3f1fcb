"""A health professional's identity from their CPS card's authentication certificate
(issue 18 §2), and the proof they hold its key.

- Identity: the IdNat_PS ("8" + 11-digit RPPS) is the subject's commonName, as
  IGC-Santé CPx certificates carry it; the name comes from givenName and surname.
- Trust: the certificate must chain to one of `anchors` (pro.trust_anchors), through
  the intermediate certificates sent with it or found beside the anchors, each
  signature checked with `cryptography` (RFC 5280 §6.1 reduced to what a card
  certificate needs: issuer name, signature, CA basic constraint, validity); be within
  its validity; not be revoked by a CRL its issuer signed (pro.crls); and allow
  digitalSignature (RFC 5280 §4.2.1.3), which is what signing a challenge is.
- Proof: RSASSA-PKCS1-v1_5 with SHA-256 over the challenge's ASCII bytes, what a CPS3
  card computes (PSO COMPUTE DIGITAL SIGNATURE / INTERNAL AUTHENTICATE).

Every failure is a `ProfessionalRefused` whose `code` is the API's error code.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from certs.pki import Issued, _key

MAX_CHAIN = 5  # leaf, intermediates, anchor: IGC-Santé has two levels under its root
MAX_PEM = 64 * 1024


class ProfessionalRefused(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True, slots=True)
class Professional:
    idnat: str
    name: str
    serial: int


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


def load_anchors(path: Path) -> list[x509.Certificate]:
    return load_pem_certificates(path.read_bytes())


def load_crls(paths: Sequence[Path]) -> list[x509.CertificateRevocationList]:
    """Every CRL of the files (PEM, several per file, or one DER)."""
    out: list[x509.CertificateRevocationList] = []
    for p in paths:
        data = p.read_bytes()
        if b"-----BEGIN X509 CRL-----" in data:
            for block in data.split(b"-----END X509 CRL-----")[:-1]:
                start = block.find(b"-----BEGIN X509 CRL-----")
                out.append(x509.load_pem_x509_crl(block[start:] + b"-----END X509 CRL-----\n"))
        elif data.strip():
            out.append(x509.load_der_x509_crl(data))
    return out


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    value = values[0].value if values else None
    return value if isinstance(value, str) else None


def identity(cert: x509.Certificate) -> Professional:
    cn = _attr(cert.subject, NameOID.COMMON_NAME)
    # the certificate carries the IdNat_PS itself ("8" + RPPS), never a bare RPPS; the
    # same form as policy.dossier_access.parse_idnat's output (certs/ imports no policy)
    idnat = (cn or "").strip()
    if not (len(idnat) == 12 and idnat.isascii() and idnat.isdigit() and idnat[0] == "8"):
        raise ProfessionalRefused("not_a_professional", "no IdNat_PS in the subject commonName")
    given = _attr(cert.subject, NameOID.GIVEN_NAME) or ""
    surname = _attr(cert.subject, NameOID.SURNAME) or ""
    name = " ".join(x for x in (given.strip(), surname.strip()) if x)[:200] or idnat
    return Professional(idnat, name, cert.serial_number)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _chain(leaf: x509.Certificate, extra: Sequence[x509.Certificate],
           anchors: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """leaf .. anchor, every link's signature checked; ProfessionalRefused otherwise."""
    chain = [leaf]
    current = leaf
    for _ in range(MAX_CHAIN):
        anchor = next((a for a in anchors if _signed_by(current, a)), None)
        if anchor is not None:
            return chain + [anchor]
        step = next((c for c in extra if c not in chain and _is_ca(c) and _signed_by(current, c)), None)
        if step is None:
            break
        chain.append(step)
        current = step
    raise ProfessionalRefused("untrusted_certificate", "the certificate does not chain to pro.trust_anchors")


def _revoked(chain: Sequence[x509.Certificate], crls: Sequence[x509.CertificateRevocationList]) -> bool:
    for cert, issuer in zip(chain, chain[1:]):
        pub = issuer.public_key()
        for crl in crls:
            if crl.issuer != issuer.subject:
                continue
            try:
                if not crl.is_signature_valid(pub):  # type: ignore[arg-type]
                    continue
            except (TypeError, ValueError):
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                return True
    return False


def verify_certificate(pem: bytes, anchors: Sequence[x509.Certificate],
                       crls: Sequence[x509.CertificateRevocationList],
                       now: dt.datetime | None = None) -> tuple[x509.Certificate, Professional]:
    """The leaf certificate of `pem` (leaf first, intermediates after) and who it names,
    once trusted, valid, not revoked and allowed to sign; else ProfessionalRefused."""
    if len(pem) > MAX_PEM:
        raise ProfessionalRefused("untrusted_certificate", "certificate too large")
    certs = load_pem_certificates(pem)
    if not certs:
        raise ProfessionalRefused("untrusted_certificate", "no PEM certificate")
    leaf, extra = certs[0], certs[1:]
    chain = _chain(leaf, list(extra), anchors)
    now = now or dt.datetime.now(dt.timezone.utc)
    for c in chain:
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:
            raise ProfessionalRefused("expired_certificate", "a certificate of the chain is outside its validity")
    if _revoked(chain, crls):
        raise ProfessionalRefused("revoked_certificate", "the certificate is on a CRL of its issuer")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        signs = usage.digital_signature
    except x509.ExtensionNotFound:
        signs = True  # RFC 5280 §4.2.1.3: without the extension, no usage is restricted
    if not signs:
        raise ProfessionalRefused("untrusted_certificate", "the certificate does not allow digitalSignature")
    return leaf, identity(leaf)


def verify_signature(cert: x509.Certificate, message: bytes, signature: bytes) -> None:
    """RSASSA-PKCS1-v1_5 / SHA-256 (RFC 8017 §8.2) of `message` by the certificate's
    key (ECDSA/SHA-256 too, for cards with EC keys); ProfessionalRefused otherwise."""
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            raise InvalidSignature()
    except (InvalidSignature, ValueError):
        raise ProfessionalRefused("bad_signature", "the signature does not verify") from None


# ---- the development PKI: CPS-like certificates for tests ------------------------------


def cps_subject(rpps: str, given: str, surname: str) -> x509.Name:
    """A subject as IGC-Santé CPx authentication certificates write it: C, O, OU, CN =
    the IdNat_PS ("8" + RPPS), givenName, surname."""
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CABINET MEDICAL TEST"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Medecin"),
        x509.NameAttribute(NameOID.COMMON_NAME, "8" + rpps),
        x509.NameAttribute(NameOID.GIVEN_NAME, given),
        x509.NameAttribute(NameOID.SURNAME, surname),
    ])


def issue_cps(ca: Issued, rpps: str, given: str, surname: str, days: int = 1095,
              not_before: dt.datetime | None = None, subject: x509.Name | None = None,
              digital_signature: bool = True) -> Issued:
    """A CPS-like authentication certificate from the development CA (tests, demos):
    digitalSignature, clientAuth, no SAN, RSA 2048 like a CPS3 card's key."""
    key = _key()
    start = not_before or (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    cert = (x509.CertificateBuilder().subject_name(subject or cps_subject(rpps, given, surname))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=digital_signature, content_commitment=False,
                                         key_encipherment=not digital_signature, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))
    return Issued(cert, key)


def sign_challenge(key: rsa.RSAPrivateKey, nonce: str) -> bytes:
    """What the card computes: RSASSA-PKCS1-v1_5 / SHA-256 over the nonce's ASCII bytes."""
    return key.sign(nonce.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
