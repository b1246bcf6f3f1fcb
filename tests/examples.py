"""How many examples the slowest property tests draw (Hypothesis `max_examples`).

The default suite draws a third of the counts written in the tests (at least 20): the
four slowest property modules took 60 s of the suite. The full counts are the long
form, for a nightly or a change to the code they cover:

    PROPERTY_EXAMPLES_PERCENT=100 ./run-tests.sh tests/unit/test_mime_base64.py

Any percentage works (300 draws three times the written counts)."""
from __future__ import annotations

import os

import pytest

_VARIABLE = "PROPERTY_EXAMPLES_PERCENT"


def _percent() -> int:
    raw = os.environ.get(_VARIABLE, "33").strip()
    if not raw.isdigit() or int(raw) == 0:
        raise pytest.UsageError(f"{_VARIABLE} must be a whole number above 0, not {raw!r}")
    return int(raw)


def examples(written: int) -> int:
    """The number of examples to draw for a test written with `written`."""
    return max(20, written * _percent() // 100)
