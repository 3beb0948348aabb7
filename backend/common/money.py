"""Amounts as people type them ("12.50") to and from integer cents."""

from __future__ import annotations

import re

from backend.common.limits import InvalidInput, amount_cents

_AMOUNT_RE = re.compile(r"^(\d{1,15})(?:\.(\d{1,2}))?$")


def parse_cents(text: str) -> int:
    """'12.5' -> 1250; rejects signs, fractional cents, exponents and garbage."""
    text = text.strip()
    match = _AMOUNT_RE.match(text)
    if not match:
        if re.match(r"^\d+\.\d{3,}$", text):
            raise InvalidInput(f"amount {text!r} has a fraction of a cent: use at most 2 decimals")
        if re.match(r"^\s*-", text):
            raise InvalidInput(f"amount must be positive, got {text}")
        raise InvalidInput(f"amount {text!r} is not a positive number like 12.50")
    units, frac = match.group(1), (match.group(2) or "").ljust(2, "0")
    return amount_cents(int(units) * 100 + int(frac))


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100:,}.{cents % 100:02d}"
