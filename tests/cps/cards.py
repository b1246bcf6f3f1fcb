"""Test CPS certificates from the development CA, shaped as IGC-Sante CPx authentication
certificates: the IdNat_PS ("8" + 11-digit RPPS) in commonName, givenName and surname."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from certs.pki import Issued, cert_pem, key_pem, write_private
from certs.professional import issue_cps

RPPS = "10001234567"
IDNAT = "8" + RPPS


@dataclass(frozen=True)
class CardFiles:
    cert: Path
    key: Path
    issued: Issued


def issue_cps_cert(ca: Issued, out_dir: Path, rpps: str = RPPS, given: str = "Jeanne",
                   surname: str = "Medecin", days: int = 365, stem: str = "cps") -> CardFiles:
    """The card's certificate and key as files: the product's own CPS-like issuer
    (certs.professional.issue_cps), written where the virtual card reads them."""
    issued = issue_cps(ca, rpps, given, surname, days=days)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.pem").write_bytes(cert_pem(issued.cert))
    write_private(out_dir / f"{stem}.key", key_pem(issued.key))
    return CardFiles(out_dir / f"{stem}.pem", out_dir / f"{stem}.key", issued)
