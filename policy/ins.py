"""INS matricule (NIR or NIA) validation: the local part of a patient address.

The matricule INS is the 13-character NIR (or NIA, the temporary number) followed by a
2-digit key. Key = 97 - (N mod 97), where N is the 13 characters read as a number after
replacing the Corsican departments 2A by 19 and 2B by 18 (INSEE rule used by the
Référentiel INS).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# sex/kind digit: 1, 2 (NIR), 3, 4 (NIR of people born abroad before registration),
# 7, 8 (NIA, temporary numbers); year; month (01-12, or 20-42 / 50-99 when unknown,
# INSEE conventions); department (2 digits, or 2A/2B); commune; order; key.
# [0-9], not \d: \d would accept any Unicode digit (full-width "２７９…").
_INS_RE = re.compile(r"^([1-478])([0-9]{2})([0-9]{2})([0-9]{2}|2[AB])([0-9]{3})([0-9]{3})([0-9]{2})$")


_CORSICA = {"2A": "19", "2B": "18"}


class InsError(ValueError):
    """The string is not a valid matricule INS; the message says why."""


@dataclass(frozen=True, slots=True)
class Ins:
    value: str  # the 15 characters, upper case (2A/2B)

    def __str__(self) -> str:
        return self.value


def ins_key(base13: str) -> int:
    """Key of a 13-character NIR/NIA base."""
    dept = base13[5:7].upper()
    digits = base13[:5] + _CORSICA.get(dept, dept) + base13[7:13]
    return 97 - (int(digits) % 97)


def parse_ins(text: str) -> Ins:
    """Validate syntax and key; raise InsError naming the problem. Nothing is stripped:
    callers that read human input (the CLI) strip it themselves."""
    value = text.upper()
    m = _INS_RE.fullmatch(value)  # not match(): "$" also matches before a final "\n"
    if not m:
        raise InsError(f"INS {text!r} is not 13 characters (NIR/NIA) followed by a 2-digit key")
    month = int(m.group(3))
    if not (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99):
        raise InsError(f"INS {text!r} has an impossible month {m.group(3)}")
    expected = ins_key(value[:13])
    if int(m.group(7)) != expected:
        raise InsError(f"INS {text!r} has key {m.group(7)}, expected {expected:02d}")
    return Ins(value)


def is_valid_ins(text: str) -> bool:
    try:
        parse_ins(text)
    except InsError:
        return False
    return True
