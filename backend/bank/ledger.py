"""A bank's ledger in SQLite or PostgreSQL: accounts, prepared transactions (holds) and a journal.

Every function here runs inside one write of backend.common.db.Database (a
savepoint of a group commit), so it sees a consistent ledger and its effects are
on disk before anyone is told about them.

Invariants, checked by the schema and by assertions:
  0 <= held_cents <= balance_cents for every account (available never negative);
  a transaction's state moves PREPARED -> COMMITTED or PREPARED -> ABORTED, once;
  every change of a balance has a journal row naming its transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from backend.common.db import Conn, Row
from backend.common.errors import FailedPrecondition
from backend.common.states import LedgerState, Refusal

# Version 1 is the schema from before versioning (IF NOT EXISTS adopts such a
# database as it is); each later version changes what the one before made.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    balance_cents INTEGER NOT NULL,
    held_cents INTEGER NOT NULL DEFAULT 0,
    CHECK (held_cents >= 0 AND balance_cents >= held_cents)
);
CREATE TABLE IF NOT EXISTS txns (
    txn_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('PREPARED', 'COMMITTED', 'ABORTED')),
    reason TEXT NOT NULL DEFAULT '',
    prepared_at REAL NOT NULL,
    decided_at REAL
);
CREATE INDEX IF NOT EXISTS txns_in_doubt ON txns (prepared_at) WHERE state = 'PREPARED';
CREATE TABLE IF NOT EXISTS legs (
    txn_id TEXT NOT NULL REFERENCES txns (txn_id),
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    delta_cents INTEGER NOT NULL CHECK (delta_cents != 0),
    PRIMARY KEY (txn_id, account_id)
);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    txn_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    delta_cents INTEGER NOT NULL,
    balance_after_cents INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_account ON journal (account_id, seq);
"""

# Why a NO vote (states.Refusal), so the coordinator never reads the words; and the
# seeded total of a ledger seeded before it was recorded, which its journal explains.
# A migration is history: its text never changes, so it names values, not enums.
SCHEMA_V2 = """
ALTER TABLE txns ADD COLUMN refusal TEXT
    CHECK (refusal IN ('INSUFFICIENT_FUNDS', 'UNKNOWN_ACCOUNT', 'ALREADY_ABORTED'));
UPDATE txns SET refusal = CASE
    WHEN reason = 'insufficient funds' THEN 'INSUFFICIENT_FUNDS'
    WHEN reason LIKE 'unknown account %' THEN 'UNKNOWN_ACCOUNT'
    ELSE 'ALREADY_ABORTED' END
WHERE state = 'ABORTED' AND decided_at = prepared_at AND NOT EXISTS (SELECT 1 FROM legs WHERE legs.txn_id = txns.txn_id);
INSERT INTO meta (key, value)
SELECT 'seeded_total_cents',
       (SELECT COALESCE(SUM(balance_cents), 0) FROM accounts) - (SELECT COALESCE(SUM(delta_cents), 0) FROM journal)
WHERE EXISTS (SELECT 1 FROM meta WHERE key = 'seeded')
  AND NOT EXISTS (SELECT 1 FROM meta WHERE key = 'seeded_total_cents');
"""

MIGRATIONS = (SCHEMA_V1, SCHEMA_V2)

# PostgreSQL starts at today's shape (SQLite's V1 + V2); a later change is a new script on both lists.
PG_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    balance_cents BIGINT NOT NULL,
    held_cents BIGINT NOT NULL DEFAULT 0,
    CHECK (held_cents >= 0 AND balance_cents >= held_cents)
);
CREATE TABLE txns (
    txn_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('PREPARED', 'COMMITTED', 'ABORTED')),
    reason TEXT NOT NULL DEFAULT '',
    prepared_at DOUBLE PRECISION NOT NULL,
    decided_at DOUBLE PRECISION,
    refusal TEXT CHECK (refusal IN ('INSUFFICIENT_FUNDS', 'UNKNOWN_ACCOUNT', 'ALREADY_ABORTED'))
);
CREATE INDEX txns_in_doubt ON txns (prepared_at) WHERE state = 'PREPARED';
CREATE TABLE legs (
    txn_id TEXT NOT NULL REFERENCES txns (txn_id),
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    delta_cents BIGINT NOT NULL CHECK (delta_cents != 0),
    PRIMARY KEY (txn_id, account_id)
);
CREATE TABLE journal (
    seq BIGSERIAL PRIMARY KEY,
    txn_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    delta_cents BIGINT NOT NULL,
    balance_after_cents BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX journal_account ON journal (account_id, seq);
"""

PG_MIGRATIONS = (PG_SCHEMA_V1,)


class LedgerError(FailedPrecondition):
    """A decision that contradicts this ledger (commit of an aborted transaction, ...):
    a protocol violation, never expected."""


@dataclass(frozen=True)
class Vote:
    yes: bool
    refusal: Refusal | None = None  # why NO
    reason: str = ""  # why NO, in words


def seed(conn: Conn, accounts: list[dict]) -> bool:
    """Load fixture accounts on first start only; afterwards the database is the truth."""
    if conn.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone():
        return False
    for acc in accounts:
        balance = int(acc["balance_cents"])
        assert balance >= 0, acc
        conn.execute(
            "INSERT INTO accounts (account_id, owner, balance_cents) VALUES (?, ?, ?)",
            (acc["id"], acc["owner"], balance),
        )
    conn.execute("INSERT INTO meta (key, value) VALUES ('seeded', ?)", (str(time.time()),))
    total = sum(int(acc["balance_cents"]) for acc in accounts)
    conn.execute("INSERT INTO meta (key, value) VALUES ('seeded_total_cents', ?)", (str(total),))
    return True


def seeded_total_cents(conn: Conn) -> int:
    """What the fixtures put in at the first start (0 before seeding)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'seeded_total_cents'").fetchone()
    return int(row[0]) if row is not None else 0


def overview(conn: Conn) -> tuple[list[Row], int]:
    """Every account and the seeded total, from one snapshot."""
    return accounts(conn), seeded_total_cents(conn)


def prepare(conn: Conn, txn_id: str, legs: list[tuple[str, int]]) -> Vote:
    """Vote on a transaction; a YES holds the debited funds. Same id again -> same vote.

    Few statements on the way to a YES, and few whose result must be read (on PostgreSQL each
    read is a round trip; the rest are pipelined): the transaction is claimed by a conditional
    insert (a known id reads its vote instead), a debit's hold is a conditional update that
    only lands if the funds are there, a credit's leg is inserted only if its account exists,
    and only when something is refused do we look closer and undo what was done."""
    now = time.time()
    claimed = conn.execute(
        "INSERT INTO txns (txn_id, state, prepared_at) VALUES (?, 'PREPARED', ?) ON CONFLICT (txn_id) DO NOTHING",
        (txn_id, now),
    ).rowcount
    if not claimed:
        row = conn.execute("SELECT state, refusal, reason FROM txns WHERE txn_id = ?", (txn_id,)).fetchone()
        if row["state"] != LedgerState.ABORTED:
            return Vote(True)
        return Vote(False, Refusal(row["refusal"] or Refusal.ALREADY_ABORTED), row["reason"])
    held: list[tuple[str, int]] = []
    for account_id, delta in legs:
        refusal = _leg(conn, txn_id, account_id, delta)
        if refusal is not None:
            reason = "insufficient funds" if refusal == Refusal.INSUFFICIENT_FUNDS else f"unknown account {account_id}"
            for held_account, amount in held:
                conn.execute(
                    "UPDATE accounts SET held_cents = held_cents - ? WHERE account_id = ?", (amount, held_account)
                )
            conn.execute("DELETE FROM legs WHERE txn_id = ?", (txn_id,))  # a refused transaction has none
            conn.execute(
                "UPDATE txns SET state = 'ABORTED', refusal = ?, reason = ?, decided_at = ? WHERE txn_id = ?",
                (refusal, reason, now, txn_id),
            )
            return Vote(False, refusal, reason)
        if delta < 0:
            held.append((account_id, -delta))
    return Vote(True)


def _leg(conn: Conn, txn_id: str, account_id: str, delta: int) -> Refusal | None:
    """Record a leg: a debit only once its funds are held (a conditional update: only with that
    much available), a credit only if its account exists; why not, if not."""
    if delta < 0:
        if conn.execute(
            "UPDATE accounts SET held_cents = held_cents + ? WHERE account_id = ? AND balance_cents - held_cents >= ?",
            (-delta, account_id, -delta),
        ).rowcount:
            conn.execute(
                "INSERT INTO legs (txn_id, account_id, delta_cents) VALUES (?, ?, ?)", (txn_id, account_id, delta)
            )
            return None
        known = conn.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,)).fetchone() is not None
        return Refusal.INSUFFICIENT_FUNDS if known else Refusal.UNKNOWN_ACCOUNT
    if conn.execute(
        "INSERT INTO legs (txn_id, account_id, delta_cents) SELECT ?, account_id, ? FROM accounts WHERE account_id = ?",
        (txn_id, delta, account_id),
    ).rowcount:
        return None
    return Refusal.UNKNOWN_ACCOUNT


def _legs(conn: Conn, txn_id: str) -> list[Row]:
    return conn.execute("SELECT account_id, delta_cents FROM legs WHERE txn_id = ?", (txn_id,)).fetchall()


def _state_and_legs(conn: Conn, txn_id: str) -> tuple[str | None, list[tuple[str, int]]]:
    """A transaction's state (None: never heard of) and its legs, in one read."""
    rows = conn.execute(
        "SELECT t.state, l.account_id, l.delta_cents FROM txns t LEFT JOIN legs l ON l.txn_id = t.txn_id "
        "WHERE t.txn_id = ? ORDER BY l.account_id",
        (txn_id,),
    ).fetchall()
    if not rows:
        return None, []
    return rows[0]["state"], [(r["account_id"], r["delta_cents"]) for r in rows if r["account_id"] is not None]


def commit(conn: Conn, txn_id: str) -> bool:
    """Apply a prepared transaction. Returns False if it was already committed. Refuses
    (LedgerError) before it writes anything: a batch need not undo a refused decision.

    One read (the state and the legs); the writes read nothing back, so on PostgreSQL they go
    out pipelined. A journal row takes the balance after its update from the account itself,
    and the schema's CHECK (0 <= held <= balance) refuses any update that would make it
    negative: the statement raises, and nothing of this decision is applied."""
    state, legs = _state_and_legs(conn, txn_id)
    if state is None:
        raise LedgerError(f"commit of unknown transaction {txn_id}: it was never prepared here")
    if state == LedgerState.COMMITTED:
        return False
    if state == LedgerState.ABORTED:
        raise LedgerError(f"commit of transaction {txn_id}, which is aborted here")
    assert legs, txn_id  # a YES vote always recorded its legs
    now = time.time()
    for account_id, delta in legs:
        conn.execute(
            "UPDATE accounts SET balance_cents = balance_cents + ?, held_cents = held_cents - ? WHERE account_id = ?",
            (delta, -delta if delta < 0 else 0, account_id),
        )
        conn.execute(
            "INSERT INTO journal (txn_id, account_id, delta_cents, balance_after_cents, at) "
            "SELECT ?, account_id, ?, balance_cents, ? FROM accounts WHERE account_id = ?",
            (txn_id, delta, now, account_id),
        )
    conn.execute("UPDATE txns SET state = 'COMMITTED', decided_at = ? WHERE txn_id = ?", (now, txn_id))
    return True


def abort(conn: Conn, txn_id: str) -> bool:
    """Release a prepared transaction's holds. Unknown ids get an ABORTED tombstone,
    so a Prepare that arrives late votes NO. Returns False if it was already aborted.
    Refuses (LedgerError) before it writes anything."""
    state, legs = _state_and_legs(conn, txn_id)
    now = time.time()
    if state is None:
        conn.execute(
            "INSERT INTO txns (txn_id, state, refusal, reason, prepared_at, decided_at) "
            "VALUES (?, 'ABORTED', ?, 'aborted before prepare', ?, ?)",
            (txn_id, Refusal.ALREADY_ABORTED, now, now),
        )
        return True
    if state == LedgerState.ABORTED:
        return False
    if state == LedgerState.COMMITTED:
        raise LedgerError(f"abort of transaction {txn_id}, which is committed here")
    for account_id, delta in legs:
        if delta < 0:
            conn.execute("UPDATE accounts SET held_cents = held_cents - ? WHERE account_id = ?", (-delta, account_id))
    conn.execute(
        "UPDATE txns SET state = 'ABORTED', reason = 'aborted by coordinator', decided_at = ? WHERE txn_id = ?",
        (now, txn_id),
    )
    return True


def in_doubt(conn: Conn, older_than: float, limit: int = 100) -> list[str]:
    rows = conn.execute(
        "SELECT txn_id FROM txns WHERE state = 'PREPARED' AND prepared_at < ? ORDER BY prepared_at LIMIT ?",
        (older_than, limit),
    ).fetchall()
    return [r[0] for r in rows]


def account(conn: Conn, account_id: str) -> Row | None:
    return conn.execute(
        "SELECT account_id, owner, balance_cents, held_cents FROM accounts WHERE account_id = ?", (account_id,)
    ).fetchone()


def accounts(conn: Conn) -> list[Row]:
    return conn.execute(
        "SELECT account_id, owner, balance_cents, held_cents FROM accounts ORDER BY account_id"
    ).fetchall()


def transactions(conn: Conn, after: str, limit: int) -> list[tuple[Row, list[Row]]]:
    rows = conn.execute(
        "SELECT txn_id, state, reason FROM txns WHERE txn_id > ? ORDER BY txn_id LIMIT ?", (after, limit)
    ).fetchall()
    return [(r, _legs(conn, r["txn_id"])) for r in rows]
