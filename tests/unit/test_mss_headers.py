"""policy/mss_headers.py: the MSSanté headers of the client référentiel, and
dossier_bridge.cda.identity_traits (the facts X-MSS-INS is judged on)."""
from __future__ import annotations

from pathlib import Path

import pytest

from dossier_bridge.cda import CdaError, identity_traits
from policy.mss_headers import (IdentityTraits, check_codecda, check_fin_subject, check_ins, check_mes, check_nil,
                                ins_qualified, parse_codecda)

CDA_DIR = Path(__file__).resolve().parents[2] / "../shared/data/cda"
FULL = IdentityTraits("279035121518989", "PAT-TROIS", "DOMINIQUE", "19790328", "F")


def test_codecda_values_are_comma_separated() -> None:
    assert parse_codecda("34112-3, PRESC-BIO ,15508-5") == ("34112-3", "PRESC-BIO", "15508-5")


@pytest.mark.parametrize("value, codes, ok", [
    (None, [], True),  # no CDA in a package: no header
    ("11490-0", [], False),  # a header without a CDA
    (None, ["11490-0"], False),  # a CDA without its header
    ("11490-0", ["11490-0"], True),
    ("11502-2,11490-0", ["11490-0", "11502-2"], True),  # several documents, any order
    ("11490-0", ["11490-0", "11502-2"], False),  # one code missing
    ("11490-0,,11502-2", ["11490-0", "11502-2"], False),
    ("11502-2", ["11490-0"], False),  # the wrong code
    ("11490-0", [None], False),  # a CDA header without code
])
def test_codecda(value: str | None, codes: list[str | None], ok: bool) -> None:
    finding = check_codecda(value, codes)
    assert finding.ok is ok and finding.rule == "mss.codecda"


@pytest.mark.parametrize("value, count, qualified, ok", [
    (None, 0, False, True), ("O", 0, False, False), (None, 1, True, False),
    ("O", 1, True, True), ("N", 1, False, True), ("N", 2, True, False), ("O", 1, False, False),
    ("oui", 1, True, False), (" O ", 1, True, True),
])
def test_ins_header(value: str | None, count: int, qualified: bool, ok: bool) -> None:
    assert check_ins(value, count, qualified).ok is ok


def test_qualified_ins_needs_the_matricule_and_the_four_traits() -> None:
    assert ins_qualified(FULL)
    for field in ("ins", "birth_family", "first_given", "birth_date", "sex"):
        assert not ins_qualified(IdentityTraits(**{**{f: getattr(FULL, f) for f in FULL.__slots__}, field: None}))


def test_nil_mes_and_fin() -> None:
    assert not check_nil(None).ok and not check_nil("  ").ok and not check_nil("r\u00e9f").ok
    assert check_nil("LPS-0042").ok
    assert check_mes(None).ok and check_mes("FIN").ok and not check_mes("fin").ok and not check_mes("OUI").ok
    assert check_fin_subject("Resultats [FIN]", True).ok
    assert check_fin_subject("Resultats", False).ok
    for lookalike in ("Resultats [fin]", "Resultats [ FIN ]", "Resultats (FIN)"):
        finding = check_fin_subject(lookalike, False)
        assert not finding.ok and "closes nothing" in finding.detail


def test_identity_traits_of_the_ans_examples() -> None:
    ldl = identity_traits((CDA_DIR / "LDL-SES_2022.01.xml").read_bytes())
    assert ldl == FULL
    cse = identity_traits((CDA_DIR / "CSE-CS8_2024.01.xml").read_bytes())
    assert cse.ins == "223042545611404" and ins_qualified(cse)
    stripped = (CDA_DIR / "LDL-SES_2022.01.xml").read_bytes().replace(b'<birthTime', b'<birthTimeX')
    stripped = stripped.replace(b'</birthTime>', b'</birthTimeX>')
    assert not ins_qualified(identity_traits(stripped))
    with pytest.raises(CdaError):
        identity_traits(b"<notcda/>")
