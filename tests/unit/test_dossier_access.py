"""policy/dossier_access.py: which documents a professional may list and read (issue 18 §1)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.dossier_access import (BLOCKED, EMERGENCY_DISABLED, NOT_AUTHORISED, DocumentFacts, IdNatError, Mode,
                                   PatientRules, dossier_access, idnat_or_none, mode_for, parse_idnat)

PROS = ("810001234567", "810009876543", "810005555555", "810007777777")
DOC_IDS = tuple(f"{i:032x}" for i in range(8))

pros = st.sampled_from(PROS)
pro_sets = st.frozensets(pros)
documents = st.lists(st.builds(DocumentFacts, st.sampled_from(DOC_IDS), st.one_of(st.none(), pros)),
                     unique_by=lambda d: d.id, max_size=len(DOC_IDS))
rules_st = st.builds(PatientRules, pro_sets, pro_sets, st.frozensets(st.sampled_from(DOC_IDS)),
                     st.one_of(st.none(), pros), st.booleans())
modes = st.sampled_from(Mode)


@settings(max_examples=500)
@given(rules_st, pros, modes, documents)
def test_a_blocked_professional_never_sees_anything(rules: PatientRules, pro: str, mode: Mode,
                                                    docs: list[DocumentFacts]) -> None:
    access = dossier_access(rules, pro, mode, docs)
    if pro in rules.blocked:
        assert access.error == BLOCKED
        assert access.visible == frozenset()


@settings(max_examples=500)
@given(rules_st, pros, modes, documents)
def test_a_hidden_document_is_listed_only_to_its_author_and_the_attending_doctor(
        rules: PatientRules, pro: str, mode: Mode, docs: list[DocumentFacts]) -> None:
    access = dossier_access(rules, pro, mode, docs)
    for d in docs:
        if d.id in rules.hidden and d.id in access.visible:
            assert pro == d.author or pro == rules.attending


@settings(max_examples=500)
@given(rules_st, pros, documents)
def test_emergency_never_reveals_a_hidden_document(rules: PatientRules, pro: str, docs: list[DocumentFacts]) -> None:
    access = dossier_access(rules, pro, Mode.EMERGENCY, docs)
    assert not access.visible & rules.hidden
    if not rules.emergency_enabled and pro not in rules.blocked:
        assert access.error == EMERGENCY_DISABLED


@settings(max_examples=300)
@given(rules_st, pros, documents)
def test_normal_mode_needs_an_authorisation_and_then_shows_every_visible_document(
        rules: PatientRules, pro: str, docs: list[DocumentFacts]) -> None:
    access = dossier_access(rules, pro, Mode.NORMAL, docs)
    if pro in rules.blocked:
        return
    if pro not in rules.authorised:
        assert access.error == NOT_AUTHORISED and not access.visible
    else:
        assert {d.id for d in docs if d.id not in rules.hidden} <= access.visible


def test_examples() -> None:
    author, attending, other = PROS[0], PROS[1], PROS[2]
    docs = [DocumentFacts(DOC_IDS[0], author), DocumentFacts(DOC_IDS[1], None), DocumentFacts(DOC_IDS[2], other)]
    rules = PatientRules(authorised=frozenset({author, attending, other}), hidden=frozenset({DOC_IDS[0]}),
                         attending=attending)
    assert dossier_access(rules, author, Mode.NORMAL, docs).visible == set(DOC_IDS[:3])
    assert dossier_access(rules, attending, Mode.NORMAL, docs).visible == set(DOC_IDS[:3])
    assert dossier_access(rules, other, Mode.NORMAL, docs).visible == {DOC_IDS[1], DOC_IDS[2]}
    stranger = PROS[3]
    assert dossier_access(rules, stranger, Mode.NORMAL, docs).error == NOT_AUTHORISED
    assert dossier_access(rules, stranger, Mode.EMERGENCY, docs).visible == {DOC_IDS[1], DOC_IDS[2]}
    # the author of a hidden document does not see it through emergency access either
    unauthorised = PatientRules(hidden=frozenset({DOC_IDS[0]}), attending=author)
    assert dossier_access(unauthorised, author, Mode.EMERGENCY, docs).visible == {DOC_IDS[1], DOC_IDS[2]}
    off = PatientRules(emergency_enabled=False)
    assert dossier_access(off, stranger, Mode.EMERGENCY, docs).error == EMERGENCY_DISABLED
    blocked = PatientRules(authorised=frozenset({author}), blocked=frozenset({author}))
    assert dossier_access(blocked, author, Mode.NORMAL, docs).error == BLOCKED
    assert dossier_access(blocked, author, Mode.EMERGENCY, docs).error == BLOCKED


def test_mode_for() -> None:
    rules = PatientRules(authorised=frozenset({PROS[0]}))
    assert mode_for(rules, PROS[0], emergency_active=True) is Mode.NORMAL
    assert mode_for(rules, PROS[1], emergency_active=True) is Mode.EMERGENCY
    assert mode_for(rules, PROS[1], emergency_active=False) is Mode.NORMAL


@pytest.mark.parametrize("text,expected", [("810001234567", "810001234567"), ("10001234567", "810001234567"),
                                           (" 810001234567 ", "810001234567")])
def test_parse_idnat_accepts_idnat_and_bare_rpps(text: str, expected: str) -> None:
    assert parse_idnat(text) == expected


@pytest.mark.parametrize("text", ["", "1234", "010001234567", "8100012345678", "81000123456x", "８10001234567",
                                  "8-0001234567"])
def test_parse_idnat_refuses_anything_else(text: str) -> None:
    with pytest.raises(IdNatError):
        parse_idnat(text)
    assert idnat_or_none(text) is None


def test_idnat_or_none_of_non_strings() -> None:
    assert idnat_or_none(None) is None
    assert idnat_or_none(810001234567) is None
