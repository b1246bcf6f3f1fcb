"""Which documents of a patient's dossier a health professional may list and read
(issue 18 §1): pure, stdlib only; the store keeps the facts, the API acts on the answer.

The rules (Mon espace santé, "Accès des professionnels de santé"):
1. A blocked professional sees nothing, in any mode.
2. In normal mode a professional sees the dossier only once authorised: by the patient,
   or by declaring the patient's consent at their first access.
3. In emergency mode ("accès en cas d'urgence") an unauthorised professional sees the
   dossier, unless the patient switched emergency access off.
4. A hidden document is visible only to its author (the CDA/XDM author id) and the
   attending doctor ("médecin traitant"), and never through emergency access, whoever
   asks.

Professionals are named by their IdNat_PS: "8" followed by the 11-digit RPPS number
(the CDA `assignedAuthor/id` extension under the RPPS OID 1.2.250.1.71.4.2.1, and the
commonName of IGC-Santé CPx authentication certificates). `parse_idnat` also takes the
bare RPPS number, so people may type either.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

IDNAT_RPPS_PREFIX = "8"  # idNat_PS type of a professional registered in RPPS (ANS, CI-SIS)


class IdNatError(ValueError):
    pass


def parse_idnat(text: str) -> str:
    """The IdNat_PS of `text`: a 12-character IdNat_PS ("8" + RPPS) or a bare
    11-digit RPPS number, surrounding spaces ignored. Raises IdNatError."""
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        raise IdNatError(f"{text!r} is not an IdNat_PS (\"8\" + 11-digit RPPS) nor an RPPS number (11 digits)")
    if len(value) == 11:
        return IDNAT_RPPS_PREFIX + value
    if len(value) == 12 and value.startswith(IDNAT_RPPS_PREFIX):
        return value
    raise IdNatError(f"{text!r} is not an IdNat_PS (\"8\" + 11-digit RPPS) nor an RPPS number (11 digits)")


def idnat_or_none(text: object) -> str | None:
    """A document's author id as the dossier recorded it (XDM gives the bare RPPS or
    the IdNat_PS, CDA the IdNat_PS), normalised; None when it names no professional."""
    if not isinstance(text, str):
        return None
    try:
        return parse_idnat(text)
    except IdNatError:
        return None


class Mode(Enum):
    NORMAL = "normal"
    EMERGENCY = "emergency"


@dataclass(frozen=True, slots=True)
class PatientRules:
    """What the patient decided, as the store keeps it (IdNat_PS everywhere)."""

    authorised: frozenset[str] = frozenset()
    blocked: frozenset[str] = frozenset()
    hidden: frozenset[str] = frozenset()  # document ids
    attending: str | None = None  # the médecin traitant's IdNat_PS
    emergency_enabled: bool = True  # "Accès en cas d'urgence" (on by default)


@dataclass(frozen=True, slots=True)
class DocumentFacts:
    id: str
    author: str | None  # IdNat_PS of the document's author, None when it names none


@dataclass(frozen=True, slots=True)
class Access:
    """The answer: `error` (the API's code) when the professional may see nothing,
    else the ids of the documents they may list and read."""

    error: str | None
    visible: frozenset[str] = frozenset()

    @property
    def allowed(self) -> bool:
        return self.error is None


BLOCKED = "blocked"
NOT_AUTHORISED = "not_authorised"
EMERGENCY_DISABLED = "emergency_disabled"


def may_enter(rules: PatientRules, idnat: str, mode: Mode) -> str | None:
    """None when the professional may open the dossier in that mode, else the refusal."""
    if idnat in rules.blocked:
        return BLOCKED
    if mode is Mode.EMERGENCY:
        return None if rules.emergency_enabled else EMERGENCY_DISABLED
    return None if idnat in rules.authorised else NOT_AUTHORISED


def dossier_access(rules: PatientRules, idnat: str, mode: Mode, documents: Iterable[DocumentFacts]) -> Access:
    """Which of `documents` the professional `idnat` may list and read in `mode`."""
    refusal = may_enter(rules, idnat, mode)
    if refusal is not None:
        return Access(refusal)
    visible = set()
    for d in documents:
        if d.id not in rules.hidden:
            visible.add(d.id)
        elif mode is Mode.NORMAL and (d.author == idnat or (rules.attending is not None and rules.attending == idnat)):
            visible.add(d.id)
    return Access(None, frozenset(visible))


def mode_for(rules: PatientRules, idnat: str, emergency_active: bool) -> Mode:
    """The mode a request runs in: normal once authorised (it sees what its author and
    attending rights allow), else emergency when the token holds a live emergency
    access to this patient, else normal (and refused)."""
    if idnat in rules.authorised or not emergency_active:
        return Mode.NORMAL
    return Mode.EMERGENCY
