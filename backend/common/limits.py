"""Bounds on everything a caller can send, and the checks that enforce them.

Each check raises InvalidInput (INVALID_ARGUMENT) with a message a person can
act on. Messages never echo a password or token.
"""

from __future__ import annotations

import re

from backend.common.errors import InvalidInput

MAX_AMOUNT_CENTS = 100_000_000_00  # 100 million currency units per payment
MAX_IDEMPOTENCY_KEY = 255
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,31}$")
MIN_PASSWORD, MAX_PASSWORD = 8, 256
BANK_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # a gateway replica's id, a region
TXN_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
KEY_RE = re.compile(rf"^[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY}}}$")
MAX_PAGE_SIZE = 100
MAX_LEGS = 16
MAX_MESSAGE_BYTES = 64 * 1024
# Transactions per PrepareBatch/DecideBatch call: the gateway's batchers send at
# most this many, a bank refuses more, and a group commit writes at most this many.
MAX_BATCH = 256
# How long a bank works on one batch of its stream (Bank.Batches) for a sender who waits that long.
MAX_BATCH_TIMEOUT_MS = 60_000
MAX_SLOW_MOTION_MS = 2_000  # a payment pauses three times: keep it inside a client's deadline


def _show(value: str) -> str:
    return repr(value[:40] + ("…" if len(value) > 40 else ""))


def username(value: str, field: str = "username") -> str:
    if not USERNAME_RE.match(value):
        raise InvalidInput(
            f"bad username {_show(value)}: use 3-32 characters, lowercase letters, digits, '_', '.', '-'",
            field=field,
        )
    return value


def password(value: str, field: str = "password") -> str:
    if not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise InvalidInput(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long", field=field)
    return value


def bank(value: str, field: str = "bank") -> str:
    if not BANK_RE.match(value):
        raise InvalidInput(f"bad bank name {_show(value)}: use 1-32 letters, digits, '_', '.', '-'", field=field)
    return value


def account(value: str, field: str = "account_id") -> str:
    if not ACCOUNT_RE.match(value):
        raise InvalidInput(f"bad account id {_show(value)}: use 1-64 letters, digits, '_', '.', '-'", field=field)
    return value


def replica_id(value: str, field: str = "replica") -> str:
    if not NAME_RE.match(value):
        raise InvalidInput(f"bad replica id {_show(value)}: use 1-64 letters, digits, '_', '.', ':', '-'", field=field)
    return value


def region(value: str, field: str = "region") -> str:
    if not NAME_RE.match(value):
        raise InvalidInput(f"bad region {_show(value)}: use 1-64 letters, digits, '_', '.', ':', '-'", field=field)
    return value


def txn_id(value: str, field: str = "payment_id") -> str:
    if not TXN_RE.match(value):
        raise InvalidInput(f"bad transaction id {_show(value)}", field=field)
    return value


def idempotency_key(value: str, field: str = "idempotency_key") -> str:
    if not value:
        raise InvalidInput("idempotency_key is required: send a fresh UUID with each new payment", field=field)
    if not KEY_RE.match(value):
        raise InvalidInput(
            f"bad idempotency_key: use 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces",
            field=field,
        )
    return value


def amount_cents(value: int, field: str = "amount_cents") -> int:
    if value <= 0:
        raise InvalidInput(f"amount must be positive, got {value} cents", field=field)
    if value > MAX_AMOUNT_CENTS:
        raise InvalidInput(
            f"amount {value} cents is over the limit of {MAX_AMOUNT_CENTS} cents per payment", field=field
        )
    return value


def slow_motion_ms(value: int, field: str = "pause_ms") -> int:
    if not 0 <= value <= MAX_SLOW_MOTION_MS:
        raise InvalidInput(f"pause_ms must be 0 (off) to {MAX_SLOW_MOTION_MS}, got {value}", field=field)
    return value


def batch_timeout_s(value_ms: int, field: str = "timeout_ms") -> float:
    if not 1 <= value_ms <= MAX_BATCH_TIMEOUT_MS:
        raise InvalidInput(f"timeout_ms must be 1 to {MAX_BATCH_TIMEOUT_MS}, got {value_ms}", field=field)
    return value_ms / 1000


def page_size(value: int, default: int = 20, maximum: int = MAX_PAGE_SIZE) -> int:
    if value == 0:
        return default
    if not 1 <= value <= maximum:
        raise InvalidInput(f"page_size must be 1 to {maximum}, got {value}", field="page_size")
    return value
