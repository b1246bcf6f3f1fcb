"""Address classes of the patient.mssante.fr domain."""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from policy.ins import Ins, InsError, parse_ins

PATIENT_DOMAIN = "patient.mssante.fr"
TEST_LOCAL_PART = "reponse.automatique-test"


class AddressKind(Enum):
    PATIENT = "patient"
    POSTMASTER = "postmaster"  # RFC 5321 §4.5.1: must be accepted
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
    """Split a mailbox (RFC 5321 §4.1.2 Path without the angle brackets). Nothing is
    stripped: a control character in an address makes it invalid, not "cleaned"."""
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


# RFC 5321 §4.1.1.1: a Domain (letters, digits, hyphens; we also allow "_", which some
# hosts use) or an address literal (§4.1.3).
_HELO_RE = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
                      r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
                      r"|^\[(?:IPv6:[0-9A-Fa-f:.]{2,45}|[0-9]{1,3}(?:\.[0-9]{1,3}){3})\]$")


def valid_helo(arg: str) -> bool:
    return len(arg) <= 255 and bool(_HELO_RE.fullmatch(arg))  # "$" alone accepts a final "\n"


def classify(addr: Address, domain: str = PATIENT_DOMAIN) -> Classified:
    """Which class an address belongs to; domains compare case-insensitively."""
    if addr.domain != domain.lower():
        return Classified(AddressKind.FOREIGN)
    if addr.local.lower() == TEST_LOCAL_PART:
        return Classified(AddressKind.TEST)
    if addr.local.lower() == "postmaster":
        return Classified(AddressKind.POSTMASTER)
    try:
        return Classified(AddressKind.PATIENT, parse_ins(addr.local))
    except InsError as e:
        return Classified(AddressKind.BAD_PATIENT, reason=str(e))
