"""Amounts as people type them: one wording per mistake, exact cents."""

from __future__ import annotations

import pytest

from backend.common.limits import MAX_AMOUNT_CENTS, InvalidInput
from backend.common.money import format_cents, parse_cents


@pytest.mark.parametrize("text", ["0", "0.00", "-1", "-0.50", " -12 "])
def test_zero_and_negative_amounts_are_the_same_mistake(text):
    with pytest.raises(InvalidInput, match="^amount must be positive"):
        parse_cents(text)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("12.345", "fraction of a cent"),
        ("abc", "not a positive number"),
        ("1e5", "not a positive number"),
        ("", "not a positive number"),
    ],
)
def test_other_mistakes_say_what_is_wrong(text, words):
    with pytest.raises(InvalidInput, match=words):
        parse_cents(text)


def test_exact_cents_both_ways():
    assert [parse_cents(t) for t in ("12.5", "12.50", "0.01", "1000000")] == [1250, 1250, 1, 100_000_000]
    assert format_cents(123_456_789) == "1,234,567.89" and format_cents(-5) == "-0.05"
    with pytest.raises(InvalidInput, match="over the limit"):
        parse_cents(str(MAX_AMOUNT_CENTS // 100 + 1))
