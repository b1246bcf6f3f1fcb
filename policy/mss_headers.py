"""The MSSanté headers professional software sets on a message (Référentiel socle
MSSanté #2, clients de messageries, v1.0.1 §3.8 and §3.4.2.3): pure checks of their
presence and values against the facts of the message's documents.

- `X-MSS-CODECDA` (§3.8.1, ECO.2.4.1): set when the message carries at least one CDA
  document inside an IHE_XDM package; its value is the `code` of each such document's
  CDA header, comma-separated when there are several. Absent otherwise.
- `X-MSS-INS` (§3.8.2, ECO.2.4.2): set under the same condition; `O` when the package
  holds a qualified INS (the matricule, its OID and the four identity traits: birth
  family name, first birth given name, birth date, sex), `N` otherwise. Absent otherwise.
- `X-MSS-NIL` (§3.8.3, ECO.2.4.3): on every message, the product reference the
  software received when it was declared (convergence.esante.gouv.fr).
- `X-MSS-MES` (§3.4.2.3, ECO.2.2.8): absent, or `FIN` to close that message.

The daemon keeps these headers (dossier_bridge.dossier.MSS_HEADERS); the conformance
kit (relay/conformance/check.py) judges them with these functions.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

CODECDA = "X-MSS-CODECDA"
INS = "X-MSS-INS"
NIL = "X-MSS-NIL"
MES = "X-MSS-MES"

RULE_CODECDA = "mss.codecda"
RULE_INS = "mss.ins"
RULE_NIL = "mss.nil"
RULE_MES = "mss.mes"

_PRINTABLE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


@dataclass(frozen=True, slots=True)
class HeaderFinding:
    """One header checked: `ok`, the rule it follows and what was found."""

    rule: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class IdentityTraits:
    """What a CDA header says of its patient (CI-SIS structuration minimale: the INS
    identity traits of the birth certificate)."""

    ins: str | None  # a matricule under an INS OID
    birth_family: str | None  # family qualifier="BR"
    first_given: str | None  # given qualifier="BR" (first birth given name)
    birth_date: str | None  # birthTime/@value
    sex: str | None  # administrativeGenderCode/@code


def parse_codecda(value: str) -> tuple[str, ...]:
    """The codes of an X-MSS-CODECDA value: comma-separated, blanks around them ignored."""
    return tuple(code.strip() for code in value.split(","))


def ins_qualified(traits: IdentityTraits) -> bool:
    """§3.8.2: an INS is qualified when the document holds the matricule under its OID
    and the four identity traits."""
    return all((traits.ins, traits.birth_family, traits.first_given, traits.birth_date, traits.sex))


def check_codecda(value: str | None, cda_codes: Sequence[str | None]) -> HeaderFinding:
    """`cda_codes`: the `code` of each CDA document inside the message's IHE_XDM
    packages (None when a CDA header has no code), in package order."""
    if not cda_codes:
        if value is None:
            return HeaderFinding(RULE_CODECDA, True, "absent, and no CDA document in an IHE_XDM package")
        return HeaderFinding(RULE_CODECDA, False,
                             f"present ({value!r}) although no IHE_XDM package holds a CDA document")
    expected = [c for c in cda_codes if c]
    if value is None:
        return HeaderFinding(RULE_CODECDA, False,
                             f"missing: the IHE_XDM package holds CDA documents coded {', '.join(expected) or '?'}")
    given = parse_codecda(value)
    if any(not c for c in given):
        return HeaderFinding(RULE_CODECDA, False, f"{value!r}: an empty value between commas")
    if len(expected) != len(cda_codes):
        return HeaderFinding(RULE_CODECDA, False, "a CDA document of the package has no code in its header")
    if sorted(given) != sorted(expected):
        return HeaderFinding(RULE_CODECDA, False,
                             f"{value!r} is not the CDA code(s) of the package: {','.join(expected)}")
    return HeaderFinding(RULE_CODECDA, True, f"{value!r} is the code of each CDA document")


def check_ins(value: str | None, cda_count: int, any_qualified: bool) -> HeaderFinding:
    """`cda_count`: CDA documents inside IHE_XDM packages; `any_qualified`: one of them
    holds a qualified INS (`ins_qualified`)."""
    if cda_count == 0:
        if value is None:
            return HeaderFinding(RULE_INS, True, "absent, and no CDA document in an IHE_XDM package")
        return HeaderFinding(RULE_INS, False, f"present ({value!r}) although no IHE_XDM package holds a CDA document")
    expected = "O" if any_qualified else "N"
    if value is None:
        return HeaderFinding(RULE_INS, False, f"missing: expected {expected!r} for the package's CDA documents")
    if value.strip() not in ("O", "N"):
        return HeaderFinding(RULE_INS, False, f"{value!r} is neither 'O' nor 'N'")
    if value.strip() != expected:
        why = "holds a qualified INS" if any_qualified else "holds no qualified INS (matricule, OID and 4 traits)"
        return HeaderFinding(RULE_INS, False, f"{value.strip()!r} but the package {why}: expected {expected!r}")
    return HeaderFinding(RULE_INS, True, f"{expected!r} matches the package")


def check_nil(value: str | None) -> HeaderFinding:
    if value is None:
        return HeaderFinding(RULE_NIL, False, "missing: every message carries the software's product reference")
    if not _PRINTABLE.fullmatch(value.strip()):
        return HeaderFinding(RULE_NIL, False, "empty or not printable US-ASCII")
    return HeaderFinding(RULE_NIL, True, f"product reference {value.strip()!r}")


def check_mes(value: str | None) -> HeaderFinding:
    if value is None:
        return HeaderFinding(RULE_MES, True, "absent: the patient may reply to this message")
    if value.strip() != "FIN":
        return HeaderFinding(RULE_MES, False, f"{value!r}: the only value is 'FIN' (three capitals)")
    return HeaderFinding(RULE_MES, True, "'FIN': replies to this message are refused")


RULE_FIN = "mss.fin_subject"
_FIN_LOOKALIKE = re.compile(r"[\[(<{]\s*fin\s*[\])>}]", re.IGNORECASE)


def check_fin_subject(subject: str, closes: bool) -> HeaderFinding:
    """`closes`: policy.conversation.closes_exchange of the decoded subject. A tag
    that looks like `[FIN]` but is not spelled so closes nothing (DESIGN.md §4
    "Closing"): the professional believes the exchange closed and it is not."""
    if closes:
        return HeaderFinding(RULE_FIN, True, "'[FIN]': the message closes the exchange")
    found = _FIN_LOOKALIKE.search(subject)
    if found:
        return HeaderFinding(RULE_FIN, False,
                             f"{found.group(0)!r} closes nothing: the tag is '[FIN]', capitals, no space")
    return HeaderFinding(RULE_FIN, True, "no '[FIN]': the exchange stays open")
