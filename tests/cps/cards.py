"""Test CPS certificates from the development CA, shaped as IGC-Sante CPx authentication
certificates: the IdNat_PS ("8" + 11-digit RPPS) in commonName, givenName and surname."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.pki import Issued, cert_pem, key_pem, write_private

RPPS = "10001234567"
IDNAT = "8" + RPPS


@dataclass(frozen=True)
class CardFiles:
    cert: Path
    key: Path
    issued: Issued


def issue_cps_cert(ca: Issued, out_dir: Path, idnat: str = IDNAT, given: str = "Jeanne",
                   surname: str = "Medecin", days: int = 365, stem: str = "cps") -> CardFiles:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CABINET DU DR MEDECIN TEST"),
        x509.NameAttribute(NameOID.COMMON_NAME, idnat),
        x509.NameAttribute(NameOID.GIVEN_NAME, given),
        x509.NameAttribute(NameOID.SURNAME, surname),
    ])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.pem").write_bytes(cert_pem(cert))
    write_private(out_dir / f"{stem}.key", key_pem(key))
    return CardFiles(out_dir / f"{stem}.pem", out_dir / f"{stem}.key", Issued(cert, key))
