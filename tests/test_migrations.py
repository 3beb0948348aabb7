"""Schema versions: a database made by the schema from before versioning is
migrated in place with its data; one from a newer Strife is refused clearly."""

from __future__ import annotations

import sqlite3

import pytest

from backend.bank import ledger
from backend.common.db import Database, SchemaTooNew, connect, migrate
from backend.common.states import LedgerState, Refusal
from backend.gateway import store

ACCOUNTS = [("A-1", "alice", 10_000, 0), ("A-2", "bob", 500, 200)]


def old_ledger(path) -> None:
    """A ledger as the unversioned code left it: schema v1, user_version 0, no
    recorded seeded total, a NO vote, a tombstone, a held YES and a committed payment."""
    conn = connect(path)
    conn.executescript(ledger.SCHEMA_V1)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?)", ACCOUNTS)
    conn.execute("INSERT INTO meta VALUES ('seeded', '1')")
    rows = [
        ("t-no", LedgerState.ABORTED, "insufficient funds", 1.0, 1.0),
        ("t-unknown", LedgerState.ABORTED, "unknown account Z-9", 2.0, 2.0),
        ("t-tomb", LedgerState.ABORTED, "aborted before prepare", 3.0, 3.0),
        ("t-held", LedgerState.PREPARED, "", 4.0, None),
        ("t-done", LedgerState.COMMITTED, "", 5.0, 6.0),
    ]
    conn.executemany("INSERT INTO txns VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("INSERT INTO legs VALUES ('t-held', 'A-2', -200)")
    conn.execute("INSERT INTO legs VALUES ('t-done', 'A-1', 1000)")
    conn.execute(
        "INSERT INTO journal (txn_id, account_id, delta_cents, balance_after_cents, at) "
        "VALUES ('t-done', 'A-1', 1000, 10000, 6.0)"
    )
    conn.commit()
    conn.close()


async def test_a_ledger_from_before_versioning_is_migrated_with_its_data(tmp_path):
    path = tmp_path / "bank.sqlite"
    old_ledger(path)
    db = Database(path, ledger.MIGRATIONS)
    try:

        def look(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            refusals = dict(conn.execute("SELECT txn_id, refusal FROM txns").fetchall())
            return version, refusals, ledger.accounts(conn), ledger.seeded_total_cents(conn)

        version, refusals, accounts, seeded = await db.read(look)
        assert version == len(ledger.MIGRATIONS) == 2
        assert refusals == {
            "t-no": Refusal.INSUFFICIENT_FUNDS,
            "t-unknown": Refusal.UNKNOWN_ACCOUNT,
            "t-tomb": Refusal.ALREADY_ABORTED,
            "t-held": None,
            "t-done": None,
        }
        assert [tuple(a) for a in accounts] == ACCOUNTS
        assert seeded == 10_000 + 500 - 1000  # what the journal explains
        # the migrated ledger works: a replayed NO keeps its reason code, the held YES commits
        assert await db.write(lambda c: ledger.prepare(c, "t-no", [("A-1", -1)])) == ledger.Vote(
            False, Refusal.INSUFFICIENT_FUNDS, "insufficient funds"
        )
        assert await db.write(lambda c: ledger.commit(c, "t-held"))
        states = await db.read(lambda c: dict(c.execute("SELECT txn_id, state FROM txns").fetchall()))
        assert states["t-held"] == LedgerState.COMMITTED
    finally:
        db.close()
    # opening it again runs nothing more
    conn = connect(path)
    assert migrate(conn, ledger.MIGRATIONS) == len(ledger.MIGRATIONS)
    conn.close()


async def test_a_gateway_store_from_before_versioning_keeps_its_payments(tmp_path):
    path = tmp_path / "gateway.sqlite"
    conn = connect(path)
    conn.executescript(store.SCHEMA_V1)
    fields = store.PaymentFields("alice", "k1", "BankA", "A-1", "BankB", "B-1", 700)
    conn.execute("BEGIN")
    store.add_user(conn, "alice", "hash", [("BankA", "A-1")])
    # a payment in flight as the version-1 code wrote it (no owner column then)
    conn.execute("INSERT INTO idempotency_keys VALUES ('alice', 'k1', 'txn-1', 1.0)")
    conn.execute(
        "INSERT INTO payments (txn_id, username, idem_key, fingerprint, from_bank, from_account, to_bank, "
        "to_account, amount_cents, state, created_at) VALUES ('txn-1', 'alice', 'k1', ?, 'BankA', 'A-1', "
        "'BankB', 'B-1', 700, 'PREPARING', 1.0)",
        (fields.fingerprint(),),
    )
    conn.commit()
    conn.close()
    db = Database(path, store.MIGRATIONS)
    try:
        claim = await db.write(lambda c: store.claim(c, fields, "txn-2", "gw-2"))
        assert claim.kind == store.ClaimKind.IN_FLIGHT and claim.row["txn_id"] == "txn-1"
        assert await db.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == len(store.MIGRATIONS)
        # it belongs to no replica: whichever replica starts next recovers it
        assert await db.read(lambda c: store.preparing(c, "gw-7")) == ["txn-1"]
    finally:
        db.close()


def test_a_failing_migration_changes_nothing(tmp_path):
    conn = connect(tmp_path / "x.sqlite")
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, ["CREATE TABLE a (x INTEGER)", "INSERT INTO a VALUES (1); INSERT INTO nowhere VALUES (2)"])
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_database_from_a_newer_strife_is_refused(tmp_path):
    path = tmp_path / "bank-BankA.sqlite"
    conn = connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SchemaTooNew, match="99"):
        Database(path, ledger.MIGRATIONS)
