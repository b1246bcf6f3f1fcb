"""policy/ins.py: matricule INS (NIR / NIA) syntax and key (DESIGN.md §4 "Patient address")."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.ins import Ins, InsError, ins_key, is_valid_ins, parse_ins


def expected_key(base13: str) -> int:
    """Key computed here, apart from the code under test: 97 - (N mod 97), with the
    Corsican departments 2A read as 19 and 2B as 18 (INSEE rule)."""
    assert len(base13) == 13
    dept = base13[5:7].upper()
    dept = {"2A": "19", "2B": "18"}.get(dept, dept)
    n = int(base13[0:5] + dept + base13[7:13])
    return 97 - n % 97


def with_key(base13: str, key: int | None = None) -> str:
    return f"{base13}{expected_key(base13) if key is None else key:02d}"


# --- valid numbers ---------------------------------------------------------------------

def test_documentation_example_is_valid() -> None:
    assert expected_key("2790351215189") == 89  # the test's own arithmetic, checked once
    ins = parse_ins("279035121518989")
    assert ins == Ins("279035121518989")
    assert str(ins) == "279035121518989"
    assert is_valid_ins("279035121518989")


@pytest.mark.parametrize("base", [
    "1850575056045",  # man, born May 1985, Paris 75, commune 056, order 045
    "2920169123001",  # woman, born January 1992, Rhône
    "1601299350999",  # born abroad (department 99)
    "2450433063114",
    "3710159350012",  # first digit 3 is allowed by the code's NIR convention
])
def test_real_shaped_nir_with_independent_key(base: str) -> None:
    text = with_key(base)
    assert parse_ins(text).value == text
    assert ins_key(base) == expected_key(base)


@pytest.mark.parametrize("base, dept_number", [
    ("185052A004123", "19"),
    ("292072B050017", "18"),
])
def test_corsica_departments(base: str, dept_number: str) -> None:
    key = expected_key(base)
    # the letters are replaced by 19 / 18, not read as anything else
    assert key == 97 - int(base[:5] + dept_number + base[7:]) % 97
    assert parse_ins(f"{base}{key:02d}").value == f"{base}{key:02d}"


@pytest.mark.parametrize("base", ["185052A004123", "292072B050017"])
def test_corsica_wrong_key_refused(base: str) -> None:
    good = expected_key(base)
    wrong = (good % 97) + 1  # another key in 1..97
    assert wrong != good
    with pytest.raises(InsError, match=rf"key {wrong:02d}, expected {good:02d}"):
        parse_ins(f"{base}{wrong:02d}")


def test_2a_and_2b_keys_are_not_interchangeable() -> None:
    base_a, base_b = "185052A004123", "185052B004123"
    assert expected_key(base_a) != expected_key(base_b)
    # a number written with 2B but keyed as 2A is refused, and the reverse
    with pytest.raises(InsError):
        parse_ins(with_key(base_b, expected_key(base_a)))
    with pytest.raises(InsError):
        parse_ins(with_key(base_a, expected_key(base_b)))


@pytest.mark.parametrize("base", ["7850599123456", "8920199000111"])
def test_nia_first_digit_7_or_8_valid(base: str) -> None:
    assert parse_ins(with_key(base)).value == with_key(base)


def test_lower_case_corsica_accepted_and_normalised() -> None:
    upper = with_key("185052A004123")
    lower = upper.replace("2A", "2a")
    assert lower != upper
    ins = parse_ins(lower)
    assert ins.value == upper
    assert ins == parse_ins(upper)
    upper_b = with_key("292072B050017")
    assert parse_ins(upper_b.replace("2B", "2b")).value == upper_b


# --- refusals ----------------------------------------------------------------------------

def test_wrong_key_refused_naming_the_key() -> None:
    with pytest.raises(InsError, match=r"key 88, expected 89"):
        parse_ins("279035121518988")
    assert not is_valid_ins("279035121518988")


def test_ans_example_with_bad_key_refused() -> None:
    # an example number published by the ANS whose key does not verify (shared/data/README.md)
    assert expected_key("2230425456114") == 82
    with pytest.raises(InsError, match=r"key 04, expected 82"):
        parse_ins("223042545611404")
    assert not is_valid_ins("223042545611404")


@pytest.mark.parametrize("text", [
    "27903512151898",    # 14 characters
    "2790351215189890",  # 16 characters
    "",
])
def test_wrong_length_refused(text: str) -> None:
    with pytest.raises(InsError, match=r"13 characters"):
        parse_ins(text)


@pytest.mark.parametrize("text", [
    "2790X5121518989",   # letter in the month
    "27903512151898A",   # letter in the key
    "2790351215A8989",   # letter in the order number
    "2790352C1518989",   # a department letter other than 2A/2B
    "279033A21518989",   # A not after a 2
    "579035121518989",   # first digit 5 is neither NIR nor NIA
    "079035121518989",
    "27903512151898 9",
])
def test_letters_and_bad_shapes_refused(text: str) -> None:
    with pytest.raises(InsError, match=r"not 13 characters"):
        parse_ins(text)


@pytest.mark.parametrize("month", ["13", "00"])
def test_impossible_month_refused(month: str) -> None:
    base = f"279{month}51215189"
    text = with_key(base)  # right key: only the month is wrong
    with pytest.raises(InsError, match=rf"impossible month {month}"):
        parse_ins(text)


def test_error_is_a_value_error_quoting_the_input() -> None:
    with pytest.raises(ValueError) as exc:
        parse_ins("12345")
    assert isinstance(exc.value, InsError)
    assert "'12345'" in str(exc.value)


def test_non_ascii_digits_refused() -> None:
    ascii_ins = "279035121518989"
    # first character kept ASCII, the rest written with full-width digits U+FF10..U+FF19
    fullwidth = ascii_ins[0] + "".join(chr(0xFF10 + int(c)) for c in ascii_ins[1:])
    with pytest.raises(InsError):
        parse_ins(fullwidth)


# --- property ------------------------------------------------------------------------------

def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


_months = st.sampled_from([f"{m:02d}" for m in range(1, 13)])
_depts = st.one_of(_digits(2), st.sampled_from(["2A", "2B", "2a", "2b"]))
_bases = st.builds(lambda first, year, month, dept, commune, order:
                   first + year + month + dept + commune + order,
                   st.sampled_from("123478"), _digits(2), _months, _depts, _digits(3), _digits(3))


@settings(max_examples=300, deadline=None)
@given(base=_bases)
def test_property_only_the_computed_key_is_valid(base: str) -> None:
    key = expected_key(base)
    assert 1 <= key <= 97
    assert parse_ins(f"{base}{key:02d}").value == f"{base.upper()}{key:02d}"
    for other in range(100):
        if other != key:
            assert not is_valid_ins(f"{base}{other:02d}"), (base, other)


@pytest.mark.parametrize("text", ["185022A12345682\n", "279035121518989\n"])
def test_a_final_newline_is_not_part_of_an_ins(text: str) -> None:
    # Found by tests/fuzz/fuzz_ins_addresses.py (corpus/ins_addresses/regress-final-newline):
    # the pattern's "$" matched before a final "\n", so the INS value kept the newline.
    assert not is_valid_ins(text)
    with pytest.raises(InsError):
        parse_ins(text)


@pytest.mark.parametrize("helo", ["mail.test-operator.mssante.fr\n", "[127.0.0.1]\n"])
def test_a_final_newline_is_not_part_of_a_helo_name(helo: str) -> None:
    # Same trap in policy/addresses.valid_helo, whose answer the Received field trusts.
    from policy.addresses import valid_helo
    assert valid_helo(helo.rstrip("\n")) and not valid_helo(helo)
