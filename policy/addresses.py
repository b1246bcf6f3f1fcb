"""Address classes of the patient.mssante.fr domain."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from policy.ins import Ins, InsError, parse_ins

PATIENT_DOMAIN = "patient.mssante.fr"
TEST_LOCAL_PART = "reponse.automatique-test"


class AddressKind(Enum):
    PATIENT = "patient"
    TEST = "test"  # reponse.automatique-test@patient.mssante.fr
    FOREIGN = "foreign"  # another domain
    BAD_PATIENT = "bad_patient"  # our domain, but not an INS


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str  # lower case

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


def split_address(addr: str) -> Address | None:
    """Split a mailbox (RFC 5321 §4.1.2 Path without the angle brackets)."""
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        return None
    return Address(local, domain.lower().rstrip("."))


@dataclass(frozen=True, slots=True)
class Classified:
    kind: AddressKind
    ins: Ins | None = None
    reason: str = ""


def classify(addr: Address, domain: str = PATIENT_DOMAIN) -> Classified:
    """Which class an address belongs to; domains compare case-insensitively."""
    if addr.domain != domain.lower():
        return Classified(AddressKind.FOREIGN)
    if addr.local.lower() == TEST_LOCAL_PART:
        return Classified(AddressKind.TEST)
    try:
        return Classified(AddressKind.PATIENT, parse_ins(addr.local))
    except InsError as e:
        return Classified(AddressKind.BAD_PATIENT, reason=str(e))
