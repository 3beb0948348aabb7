"""A bank's ledger on its own: prepare (votes and holds), commit, abort (and its
tombstone), in-doubt transactions and seeding. After every step the ledger's
invariants are checked: 0 <= held <= balance, holds are exactly the debits of the
PREPARED transactions, the journal explains every balance, money is conserved."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from backend.bank import ledger
from backend.bank.ledger import LedgerError
from backend.common.errors import FailedPrecondition
from backend.common.states import LedgerState, Refusal
from tests.unit.sqlite_tx import open_migrated, tx

SEED = [
    {"id": "A-1", "owner": "alice", "balance_cents": 10_000},
    {"id": "A-2", "owner": "bob", "balance_cents": 5_000},
    {"id": "A-3", "owner": "carol", "balance_cents": 0},
]
SEEDED = {acc["id"]: acc["balance_cents"] for acc in SEED}
SEEDED_TOTAL = sum(SEEDED.values())


def open_ledger(path: Path) -> sqlite3.Connection:
    return open_migrated(path, ledger.MIGRATIONS)


@pytest.fixture
def conn(tmp_path: Path):
    connection = open_ledger(tmp_path / "bank.sqlite")
    try:
        assert tx(connection, ledger.seed, SEED) is True
        check(connection)
        yield connection
    finally:
        connection.close()


def assert_yes(vote: ledger.Vote) -> None:
    assert vote.yes and vote.refusal is None, vote


def assert_no(vote: ledger.Vote, refusal: Refusal) -> None:
    assert not vote.yes and vote.refusal == refusal and vote.reason, vote


def prepare(conn, txn_id: str, legs: list[tuple[str, int]]) -> ledger.Vote:
    vote = tx(conn, ledger.prepare, txn_id, legs)
    check(conn)
    return vote


def commit(conn, txn_id: str) -> bool:
    changed = tx(conn, ledger.commit, txn_id)
    check(conn)
    return changed


def abort(conn, txn_id: str) -> bool:
    changed = tx(conn, ledger.abort, txn_id)
    check(conn)
    return changed


def pay(src: str, dst: str, amount_cents: int) -> list[tuple[str, int]]:
    return [(src, -amount_cents), (dst, amount_cents)]


def balances(conn) -> dict[str, tuple[int, int]]:
    """account -> (balance_cents, held_cents)"""
    return {r["account_id"]: (r["balance_cents"], r["held_cents"]) for r in ledger.accounts(conn)}


def state(conn, txn_id: str) -> str | None:
    row = conn.execute("SELECT state FROM txns WHERE txn_id = ?", (txn_id,)).fetchone()
    return row[0] if row else None


def journal(conn, txn_id: str) -> list[tuple[str, int, int]]:
    rows = conn.execute(
        "SELECT account_id, delta_cents, balance_after_cents FROM journal WHERE txn_id = ? ORDER BY seq", (txn_id,)
    ).fetchall()
    return [tuple(r) for r in rows]


def check(conn: sqlite3.Connection) -> None:
    """The ledger's invariants, recomputed from its tables."""
    holds: dict[str, int] = {}
    for account_id, delta in conn.execute(
        "SELECT l.account_id, l.delta_cents FROM legs l JOIN txns t ON t.txn_id = l.txn_id "
        "WHERE t.state = ? AND l.delta_cents < 0",
        (LedgerState.PREPARED,),
    ):
        holds[account_id] = holds.get(account_id, 0) - delta
    moved_total = 0
    for account_id, (balance, held) in balances(conn).items():
        assert 0 <= held <= balance, (account_id, balance, held)
        assert held == holds.get(account_id, 0), (account_id, held, holds)
        running = SEEDED.get(account_id, 0)
        for delta, after in conn.execute(
            "SELECT delta_cents, balance_after_cents FROM journal WHERE account_id = ? ORDER BY seq", (account_id,)
        ):
            running += delta
            moved_total += delta
            assert after == running, (account_id, after, running)
        assert balance == running, (account_id, balance, running)
    assert sum(b for b, _ in balances(conn).values()) == ledger.seeded_total_cents(conn) + moved_total
    # only committed transactions are in the journal, with exactly their legs
    for txn_id, txn_state in conn.execute("SELECT txn_id, state FROM txns"):
        legs = sorted(
            tuple(r) for r in conn.execute("SELECT account_id, delta_cents FROM legs WHERE txn_id = ?", (txn_id,))
        )
        written = sorted((a, d) for a, d, _ in journal(conn, txn_id))
        assert written == (legs if txn_state == LedgerState.COMMITTED else []), (txn_id, txn_state)


def total(conn) -> int:
    return sum(b for b, _ in balances(conn).values())


# -------------------------------------------------------------------- prepare --


def test_a_yes_vote_holds_the_debit_and_moves_nothing_yet(conn):
    assert_yes(prepare(conn, "t1", pay("A-1", "A-2", 3_000)))
    assert balances(conn) == {"A-1": (10_000, 3_000), "A-2": (5_000, 0), "A-3": (0, 0)}
    assert state(conn, "t1") == LedgerState.PREPARED
    assert journal(conn, "t1") == []


def test_insufficient_funds_counts_the_holds_already_placed(conn):
    assert_yes(prepare(conn, "t1", pay("A-1", "A-2", 7_000)))
    assert_no(
        prepare(conn, "t2", pay("A-1", "A-2", 4_000)), Refusal.INSUFFICIENT_FUNDS
    )  # balance 10 000, available 3 000
    assert balances(conn)["A-1"] == (10_000, 7_000)
    assert state(conn, "t2") == LedgerState.ABORTED
    assert_yes(prepare(conn, "t3", pay("A-1", "A-2", 3_000)))  # exactly what is available
    assert balances(conn)["A-1"] == (10_000, 10_000)
    assert_no(prepare(conn, "t4", pay("A-1", "A-2", 1)), Refusal.INSUFFICIENT_FUNDS)


def test_an_empty_account_cannot_pay_but_can_be_paid(conn):
    assert_no(prepare(conn, "t1", pay("A-3", "A-1", 1)), Refusal.INSUFFICIENT_FUNDS)
    assert_yes(prepare(conn, "t2", pay("A-1", "A-3", 1)))


@pytest.mark.parametrize(
    "legs",
    [pay("A-1", "NOPE", 100), pay("NOPE", "A-1", 100), [("A-1", -100), ("A-2", -100), ("NOPE", 200)]],
    ids=["unknown payee", "unknown payer", "unknown after two debits"],
)
def test_an_unknown_account_votes_no_and_holds_nothing(conn, legs):
    assert_no(prepare(conn, "t1", legs), Refusal.UNKNOWN_ACCOUNT)
    assert balances(conn) == {"A-1": (10_000, 0), "A-2": (5_000, 0), "A-3": (0, 0)}
    assert state(conn, "t1") == LedgerState.ABORTED
    assert conn.execute("SELECT count(*) FROM legs").fetchone()[0] == 0


def test_a_no_on_a_later_leg_holds_nothing_for_the_earlier_debit(conn):
    assert_no(prepare(conn, "t1", [("A-2", -100), ("A-3", -1), ("A-1", 101)]), Refusal.INSUFFICIENT_FUNDS)
    assert balances(conn)["A-2"] == (5_000, 0)
    assert conn.execute("SELECT count(*) FROM legs").fetchone()[0] == 0  # nor a leg for it


def test_the_same_txn_id_again_gets_the_same_vote_and_holds_nothing_more(conn):
    assert_yes(prepare(conn, "t1", pay("A-1", "A-2", 3_000)))
    assert_yes(prepare(conn, "t1", pay("A-1", "A-2", 3_000)))
    assert_yes(prepare(conn, "t1", pay("A-1", "A-2", 9_000)))  # same id, other legs: still the first vote
    assert balances(conn)["A-1"] == (10_000, 3_000)
    assert_no(prepare(conn, "t2", pay("A-1", "A-2", 8_000)), Refusal.INSUFFICIENT_FUNDS)
    abort(conn, "t1")  # now the funds are there, but t2 was refused once and for all
    assert_no(prepare(conn, "t2", pay("A-1", "A-2", 8_000)), Refusal.INSUFFICIENT_FUNDS)
    assert balances(conn)["A-1"] == (10_000, 0)


def test_preparing_a_committed_txn_again_votes_yes_and_holds_nothing(conn):
    prepare(conn, "t1", pay("A-1", "A-2", 3_000))
    commit(conn, "t1")
    assert_yes(prepare(conn, "t1", pay("A-1", "A-2", 3_000)))
    assert balances(conn)["A-1"] == (7_000, 0)


# --------------------------------------------------------------------- commit --


def test_commit_applies_the_legs_releases_the_hold_and_journals_each_balance(conn):
    prepare(conn, "t1", pay("A-1", "A-2", 3_000))
    prepare(conn, "t2", pay("A-1", "A-3", 2_000))
    assert commit(conn, "t1") is True
    assert balances(conn) == {"A-1": (7_000, 2_000), "A-2": (8_000, 0), "A-3": (0, 0)}  # t2's hold stays
    assert sorted(journal(conn, "t1")) == [("A-1", -3_000, 7_000), ("A-2", 3_000, 8_000)]
    assert state(conn, "t1") == LedgerState.COMMITTED
    assert total(conn) == SEEDED_TOTAL
    assert commit(conn, "t2") is True
    assert balances(conn) == {"A-1": (5_000, 0), "A-2": (8_000, 0), "A-3": (2_000, 0)}
    assert sorted(journal(conn, "t2")) == [("A-1", -2_000, 5_000), ("A-3", 2_000, 2_000)]
    assert total(conn) == SEEDED_TOTAL


def test_commit_is_idempotent(conn):
    prepare(conn, "t1", pay("A-1", "A-2", 3_000))
    commit(conn, "t1")
    after_first = balances(conn)
    assert commit(conn, "t1") is False
    assert balances(conn) == after_first
    assert len(journal(conn, "t1")) == 2


def test_a_credit_only_leg_moves_money_into_this_bank_and_the_journal_says_so(conn):
    """The payee's bank of a cross-bank payment sees only the credit."""
    prepare(conn, "t1", [("A-3", 2_500)])
    assert balances(conn)["A-3"] == (0, 0)
    commit(conn, "t1")
    assert balances(conn)["A-3"] == (2_500, 0)
    assert journal(conn, "t1") == [("A-3", 2_500, 2_500)]
    assert ledger.seeded_total_cents(conn) == SEEDED_TOTAL


def test_commit_of_a_refused_or_aborted_transaction_raises_and_changes_nothing(conn):
    prepare(conn, "refused", pay("A-3", "A-1", 1))  # NO
    prepare(conn, "aborted", pay("A-1", "A-2", 100))
    abort(conn, "aborted")
    before = balances(conn)
    for txn_id in ("refused", "aborted"):
        with pytest.raises(LedgerError) as raised:
            commit(conn, txn_id)
        assert isinstance(raised.value, FailedPrecondition)
        assert state(conn, txn_id) == LedgerState.ABORTED
    assert balances(conn) == before


def test_commit_of_an_unknown_transaction_raises_and_records_nothing(conn):
    with pytest.raises(LedgerError) as raised:
        commit(conn, "never-prepared")
    assert isinstance(raised.value, FailedPrecondition)
    assert state(conn, "never-prepared") is None


# ---------------------------------------------------------------------- abort --


def test_abort_releases_the_holds_and_is_idempotent(conn):
    prepare(conn, "t1", [("A-1", -1_000), ("A-2", -500), ("A-3", 1_500)])
    assert balances(conn) == {"A-1": (10_000, 1_000), "A-2": (5_000, 500), "A-3": (0, 0)}
    assert abort(conn, "t1") is True
    assert balances(conn) == {"A-1": (10_000, 0), "A-2": (5_000, 0), "A-3": (0, 0)}
    assert state(conn, "t1") == LedgerState.ABORTED
    assert abort(conn, "t1") is False
    assert balances(conn)["A-1"] == (10_000, 0)  # not released twice


def test_abort_of_a_refused_transaction_changes_nothing(conn):
    prepare(conn, "t1", pay("A-3", "A-1", 1))
    assert abort(conn, "t1") is False
    assert state(conn, "t1") == LedgerState.ABORTED


def test_abort_of_an_unknown_transaction_leaves_a_tombstone_so_a_late_prepare_votes_no(conn):
    assert abort(conn, "t1") is True
    assert state(conn, "t1") == LedgerState.ABORTED
    assert_no(prepare(conn, "t1", pay("A-1", "A-2", 100)), Refusal.ALREADY_ABORTED)
    assert balances(conn)["A-1"] == (10_000, 0)
    assert conn.execute("SELECT count(*) FROM legs").fetchone()[0] == 0
    with pytest.raises(LedgerError):
        commit(conn, "t1")
    assert abort(conn, "t1") is False


def test_abort_after_commit_raises_and_the_commit_stands(conn):
    prepare(conn, "t1", pay("A-1", "A-2", 3_000))
    commit(conn, "t1")
    with pytest.raises(LedgerError) as raised:
        abort(conn, "t1")
    assert isinstance(raised.value, FailedPrecondition)
    assert state(conn, "t1") == LedgerState.COMMITTED
    assert balances(conn)["A-1"] == (7_000, 0) and balances(conn)["A-2"] == (8_000, 0)


# ------------------------------------------------------------------- in doubt --


def test_in_doubt_lists_prepared_transactions_older_than_the_cutoff_oldest_first(conn):
    for txn_id, prepared_at in [("t-new", 300.0), ("t-old", 100.0), ("t-mid", 200.0), ("t-done", 50.0), ("t-no", 60.0)]:
        legs = pay("A-3", "A-1", 1) if txn_id == "t-no" else pay("A-1", "A-2", 10)
        prepare(conn, txn_id, legs)
        conn.execute("UPDATE txns SET prepared_at = ? WHERE txn_id = ?", (prepared_at, txn_id))
    commit(conn, "t-done")
    assert tx(conn, ledger.in_doubt, 1_000.0) == ["t-old", "t-mid", "t-new"]
    assert tx(conn, ledger.in_doubt, 250.0) == ["t-old", "t-mid"]
    assert tx(conn, ledger.in_doubt, 1_000.0, 2) == ["t-old", "t-mid"]
    assert tx(conn, ledger.in_doubt, 100.0) == []  # strictly older
    abort(conn, "t-old")
    assert tx(conn, ledger.in_doubt, 1_000.0) == ["t-mid", "t-new"]


# ----------------------------------------------------------------------- seed --


def test_seed_loads_accounts_on_the_first_start_only(conn):
    prepare(conn, "t1", pay("A-1", "A-2", 3_000))
    commit(conn, "t1")
    other = [{"id": "A-1", "owner": "alice", "balance_cents": 1}, {"id": "Z-9", "owner": "zed", "balance_cents": 50}]
    assert tx(conn, ledger.seed, other) is False
    assert balances(conn) == {"A-1": (7_000, 0), "A-2": (8_000, 0), "A-3": (0, 0)}  # the database is the truth
    assert ledger.seeded_total_cents(conn) == SEEDED_TOTAL
    assert ledger.account(conn, "A-2")["owner"] == "bob"
    assert ledger.account(conn, "Z-9") is None


def test_seeded_total_is_what_the_first_seed_put_in_whatever_moves_later(tmp_path):
    fresh = open_ledger(tmp_path / "fresh.sqlite")
    try:
        assert ledger.seeded_total_cents(fresh) == 0
        assert tx(fresh, ledger.seed, SEED) is True
        assert ledger.seeded_total_cents(fresh) == SEEDED_TOTAL
        tx(fresh, ledger.prepare, "in", [("A-3", 2_500)])  # money that arrived from another bank
        tx(fresh, ledger.commit, "in")
        assert ledger.seeded_total_cents(fresh) == SEEDED_TOTAL
        accounts, seeded_total_cents = ledger.overview(fresh)
        assert seeded_total_cents == SEEDED_TOTAL and len(accounts) == len(SEED)
    finally:
        fresh.close()


def test_seed_refuses_a_negative_balance(tmp_path):
    conn = open_ledger(tmp_path / "bad.sqlite")
    try:
        with pytest.raises(AssertionError):
            tx(conn, ledger.seed, [{"id": "X", "owner": "x", "balance_cents": -1}])
        assert ledger.accounts(conn) == []
    finally:
        conn.close()


# --------------------------------------------------------------- a long mix --


def test_a_random_mix_of_prepares_commits_and_aborts_keeps_every_invariant(conn):
    """Deterministic (seeded) interleaving; the vote is predicted from available funds."""
    rng = random.Random(8)
    ids = [*SEEDED, "NOPE"]
    prepared: list[str] = []
    seen = {"yes": 0, "no": 0, "commit": 0, "abort": 0}
    for n in range(200):
        roll = rng.random()
        if roll < 0.5 or not prepared:
            src, dst = rng.sample(ids, 2)
            amount_cents = rng.randint(1, 6_000)
            accounts = balances(conn)
            expect_yes = src in accounts and dst in accounts and accounts[src][0] - accounts[src][1] >= amount_cents
            vote = prepare(conn, f"t{n}", pay(src, dst, amount_cents))
            assert vote.yes == expect_yes, (src, dst, amount_cents, accounts, vote)
            seen["yes" if vote.yes else "no"] += 1
            if vote.yes:
                prepared.append(f"t{n}")
        else:
            txn_id = prepared.pop(rng.randrange(len(prepared)))
            kind = "commit" if roll < 0.8 else "abort"
            assert (commit if kind == "commit" else abort)(conn, txn_id) is True
            seen[kind] += 1
        assert total(conn) == SEEDED_TOTAL
    assert min(seen.values()) >= 10, seen  # the mix exercised every path
    for txn_id in prepared:
        commit(conn, txn_id)
    assert all(held == 0 for _, held in balances(conn).values())
    assert total(conn) == SEEDED_TOTAL


def test_a_refused_decision_in_a_batch_changes_nothing_and_the_rest_applies(conn):
    """The bank applies a DecideBatch in one transaction without savepoints: a refused
    decision must refuse before it writes anything."""
    from backend.bank.service import _apply_decisions

    assert_yes(tx(conn, ledger.prepare, "t1", [("A-1", -300)]))
    assert_yes(tx(conn, ledger.prepare, "t2", [("A-2", -200)]))
    assert tx(conn, ledger.abort, "t2") is True

    batch = [("never-prepared", True), ("t2", True), ("t1", True)]  # t2 is aborted here: refused
    unknown, aborted, applied = tx(conn, _apply_decisions, batch)
    assert isinstance(unknown, LedgerError) and isinstance(aborted, LedgerError) and applied is True
    assert balances(conn)["A-1"] == (9_700, 0) and balances(conn)["A-2"] == (5_000, 0)
    check(conn)
