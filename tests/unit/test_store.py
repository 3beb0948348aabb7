"""The gateway store on its own: idempotency claims, decisions, presumed abort,
acknowledgements, sessions, users and links. Each store call runs in its own
`BEGIN IMMEDIATE` transaction on a temp-file database, as a group-committed write would."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from backend.common.errors import AlreadyExists
from backend.common.states import Decision, Outcome
from backend.gateway import store
from backend.gateway.store import ClaimKind, PaymentFields
from tests.unit.sqlite_tx import open_migrated, tx


def open_store(path: Path) -> sqlite3.Connection:
    return open_migrated(path, store.MIGRATIONS)


@pytest.fixture
def conn(tmp_path: Path):
    connection = open_store(tmp_path / "gateway.sqlite")
    try:
        yield connection
    finally:
        connection.close()


def pay(**changes) -> PaymentFields:
    fields = PaymentFields(
        username="bob",
        idem_key="key-1",
        from_bank="alpha",
        from_account="A-1",
        to_bank="beta",
        to_account="B-1",
        amount_cents=1250,
    )
    return dataclasses.replace(fields, **changes)


def rows(conn: sqlite3.Connection, sql: str) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sql).fetchall()]


def count(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def claim(conn: sqlite3.Connection, fields: PaymentFields, txn_id: str) -> store.Claim:
    return tx(conn, store.claim, fields, txn_id)


def decide(
    conn: sqlite3.Connection, txn_id: str, decision: Decision, outcome: Outcome, reason: str = ""
) -> sqlite3.Row:
    return tx(conn, store.decide, txn_id, decision, outcome, reason)


# ---------------------------------------------------------------------- claim --


def test_a_new_key_is_claimed_and_its_payment_logged_as_preparing(conn):
    result = claim(conn, pay(), "t1")
    assert result.kind == ClaimKind.NEW and result.row is None
    row = store.payment(conn, "t1")
    assert row["state"] == Decision.PREPARING and row["outcome"] is None
    assert (row["username"], row["idem_key"], row["amount_cents"]) == ("bob", "key-1", 1250)
    assert store.preparing(conn, "") == ["t1"]
    assert store.claimed_source(conn, "bob", "key-1") == ("alpha", "A-1")
    banks = conn.execute("SELECT bank, acked FROM participants WHERE txn_id = 't1' ORDER BY bank").fetchall()
    assert [tuple(r) for r in banks] == [("alpha", 0), ("beta", 0)]


def test_a_same_bank_payment_has_one_participant(conn):
    claim(conn, pay(to_bank="alpha", to_account="A-2"), "t1")
    assert rows(conn, "SELECT bank FROM participants WHERE txn_id = 't1'") == [("alpha",)]


def test_the_same_key_and_request_while_preparing_is_in_flight(conn):
    claim(conn, pay(), "t1")
    result = claim(conn, pay(), "t2")
    assert result.kind == ClaimKind.IN_FLIGHT
    assert result.row["txn_id"] == "t1" and result.row["state"] == Decision.PREPARING
    assert store.payment(conn, "t2") is None
    assert count(conn, "payments") == 1 and count(conn, "participants") == 2


@pytest.mark.parametrize(
    ("decision", "outcome", "reason"),
    [(Decision.COMMIT, Outcome.SUCCEEDED, ""), (Decision.ABORT, Outcome.DECLINED, "insufficient funds")],
)
def test_the_same_key_and_request_after_a_decision_replays_the_recorded_payment(conn, decision, outcome, reason):
    claim(conn, pay(), "t1")
    decide(conn, "t1", decision, outcome, reason)
    result = claim(conn, pay(), "t2")
    assert result.kind == ClaimKind.REPLAY
    row = result.row
    assert row["txn_id"] == "t1"
    assert (row["state"], row["outcome"], row["reason"]) == (decision, outcome, reason)
    assert (row["from_account"], row["to_account"], row["amount_cents"]) == ("A-1", "B-1", 1250)
    assert store.payment(conn, "t2") is None and count(conn, "payments") == 1


@pytest.mark.parametrize(
    "change",
    [
        {"amount_cents": 1251},
        {"from_bank": "gamma"},
        {"from_account": "A-9"},
        {"to_bank": "gamma"},
        {"to_account": "B-9"},
    ],
)
@pytest.mark.parametrize("decided", [False, True])
def test_the_same_key_with_a_different_request_is_a_conflict(conn, change, decided):
    claim(conn, pay(), "t1")
    if decided:
        decide(conn, "t1", Decision.COMMIT, Outcome.SUCCEEDED)
    result = claim(conn, pay(**change), "t2")
    assert result.kind == ClaimKind.CONFLICT
    assert result.row["txn_id"] == "t1" and result.row["amount_cents"] == 1250
    assert store.payment(conn, "t2") is None and count(conn, "payments") == 1
    assert store.claimed_source(conn, "bob", "key-1") == ("alpha", "A-1")


def test_a_retryable_abort_releases_the_key_for_a_new_claim(conn):
    claim(conn, pay(), "t1")
    decide(conn, "t1", Decision.ABORT, Outcome.RETRYABLE, "bank unavailable")
    assert store.claimed_source(conn, "bob", "key-1") is None
    assert claim(conn, pay(), "t2").kind == ClaimKind.NEW
    assert store.payment(conn, "t1")["outcome"] == Outcome.RETRYABLE  # the old attempt stays logged
    assert claim(conn, pay(), "t3").kind == ClaimKind.IN_FLIGHT  # now held by t2


def test_a_released_key_may_carry_another_request(conn):
    claim(conn, pay(), "t1")
    decide(conn, "t1", Decision.ABORT, Outcome.RETRYABLE)
    assert claim(conn, pay(amount_cents=99), "t2").kind == ClaimKind.NEW
    assert store.payment(conn, "t2")["amount_cents"] == 99


def test_a_declined_abort_keeps_the_key(conn):
    claim(conn, pay(), "t1")
    decide(conn, "t1", Decision.ABORT, Outcome.DECLINED, "insufficient funds")
    assert claim(conn, pay(amount_cents=99), "t2").kind == ClaimKind.CONFLICT


def test_keys_are_per_user(conn):
    claim(conn, pay(), "t1")
    assert claim(conn, pay(username="alice", amount_cents=5), "t2").kind == ClaimKind.NEW
    decide(conn, "t1", Decision.COMMIT, Outcome.SUCCEEDED)
    again = claim(conn, pay(username="alice", amount_cents=5), "t3")
    assert again.kind == ClaimKind.IN_FLIGHT and again.row["txn_id"] == "t2"
    assert claim(conn, pay(), "t4").row["txn_id"] == "t1"
    assert store.claimed_source(conn, "carol", "key-1") is None


# --------------------------------------------------------------------- decide --


def test_a_decision_is_written_once_and_the_second_decide_returns_the_first(conn):
    claim(conn, pay(), "t1")
    first = decide(conn, "t1", Decision.COMMIT, Outcome.SUCCEEDED, "")
    assert (first["state"], first["outcome"]) == (Decision.COMMIT, Outcome.SUCCEEDED)
    decided_at = conn.execute("SELECT decided_at FROM payments WHERE txn_id = 't1'").fetchone()[0]
    assert decided_at is not None
    second = decide(conn, "t1", Decision.ABORT, Outcome.DECLINED, "too late")
    assert (second["state"], second["outcome"], second["reason"]) == (Decision.COMMIT, Outcome.SUCCEEDED, "")
    row = conn.execute("SELECT state, outcome, reason, decided_at FROM payments WHERE txn_id = 't1'").fetchone()
    assert tuple(row) == (Decision.COMMIT, Outcome.SUCCEEDED, "", decided_at)
    assert store.preparing(conn, "") == []


def test_a_late_retryable_abort_of_a_committed_payment_does_not_release_its_key(conn):
    claim(conn, pay(), "t1")
    decide(conn, "t1", Decision.COMMIT, Outcome.SUCCEEDED)
    assert decide(conn, "t1", Decision.ABORT, Outcome.RETRYABLE)["state"] == Decision.COMMIT
    assert claim(conn, pay(), "t2").kind == ClaimKind.REPLAY


@pytest.mark.parametrize(
    ("decision", "outcome"),
    [(Decision.COMMIT, Outcome.DECLINED), (Decision.ABORT, Outcome.SUCCEEDED), (Decision.PREPARING, Outcome.RETRYABLE)],
)
def test_decide_refuses_a_decision_that_contradicts_its_outcome(conn, decision, outcome):
    claim(conn, pay(), "t1")
    with pytest.raises(AssertionError):
        decide(conn, "t1", decision, outcome)
    assert store.payment(conn, "t1")["state"] == Decision.PREPARING


# -------------------------------------------------------------- presume_abort --


def test_presumed_abort_of_an_unknown_transaction_records_nothing(conn):
    assert tx(conn, store.presume_abort, "never-seen", "asked by a bank") == Decision.ABORT
    assert count(conn, "payments") == 0


def test_presumed_abort_of_a_preparing_transaction_records_a_retryable_abort(conn):
    claim(conn, pay(), "t1")
    assert tx(conn, store.presume_abort, "t1", "in doubt at a bank") == Decision.ABORT
    row = store.payment(conn, "t1")
    assert (row["state"], row["outcome"], row["reason"]) == (Decision.ABORT, Outcome.RETRYABLE, "in doubt at a bank")
    assert claim(conn, pay(), "t2").kind == ClaimKind.NEW  # nothing the client saw: the key is free
    # the coordinator, deciding late, finds the abort and must act on it
    assert decide(conn, "t1", Decision.COMMIT, Outcome.SUCCEEDED)["state"] == Decision.ABORT


@pytest.mark.parametrize(
    ("decision", "outcome"), [(Decision.COMMIT, Outcome.SUCCEEDED), (Decision.ABORT, Outcome.DECLINED)]
)
def test_presumed_abort_of_a_decided_transaction_answers_the_recorded_decision(conn, decision, outcome):
    claim(conn, pay(), "t1")
    decide(conn, "t1", decision, outcome, "first")
    assert tx(conn, store.presume_abort, "t1", "second") == decision
    row = store.payment(conn, "t1")
    assert (row["state"], row["outcome"], row["reason"]) == (decision, outcome, "first")


# ------------------------------------------------------------ acknowledgements --


def test_unacked_lists_decided_pairs_until_each_bank_acknowledges(conn):
    claim(conn, pay(), "t1")
    claim(conn, pay(idem_key="key-2"), "t2")
    assert store.unacked(conn, "", 100) == []  # undecided: nothing to send yet
    decide(conn, "t1", Decision.COMMIT, Outcome.SUCCEEDED)
    assert sorted(store.unacked(conn, "", 100)) == [("t1", "alpha", Decision.COMMIT), ("t1", "beta", Decision.COMMIT)]
    tx(conn, store.ack_pairs, [("t1", "alpha"), ("t9", "alpha"), ("t2", "beta")])  # unknown and undecided pairs too
    assert store.unacked(conn, "", 100) == [("t1", "beta", Decision.COMMIT)]
    decide(conn, "t2", Decision.ABORT, Outcome.DECLINED, "no")
    assert sorted(store.unacked(conn, "", 100)) == [("t1", "beta", Decision.COMMIT), ("t2", "alpha", Decision.ABORT)]
    tx(conn, store.ack_pairs, [("t1", "beta"), ("t2", "alpha")])
    assert store.unacked(conn, "", 100) == []


def test_unacked_honours_its_limit(conn):
    for i in range(5):
        claim(conn, pay(idem_key=f"k{i}"), f"t{i}")
        decide(conn, f"t{i}", Decision.ABORT, Outcome.RETRYABLE)
    assert len(store.unacked(conn, "", 3)) == 3
    assert len(store.unacked(conn, "", 100)) == 10


# ------------------------------------------------------------------- sessions --


def add_user(conn: sqlite3.Connection, username: str, links: list[tuple[str, str]] | None = None) -> None:
    tx(conn, store.add_user, username, f"hash-of-{username}", links or [])


def test_a_session_names_its_user_until_revoked(conn):
    add_user(conn, "bob")
    expires_at = time.time() + 3600
    assert tx(conn, store.add_session, "tok-1", "bob", expires_at) == []
    assert store.session_user(conn, "tok-1") == ("bob", expires_at)
    assert store.session_user(conn, "tok-unknown") is None
    tx(conn, store.revoke_session, "tok-1")
    assert store.session_user(conn, "tok-1") is None
    assert rows(conn, "SELECT token_sha256 FROM sessions") == [
        (store.token_digest("tok-1"),)
    ]  # the token itself is never stored


def test_a_user_keeps_at_most_max_sessions_and_the_oldest_is_revoked(conn):
    add_user(conn, "bob")
    add_user(conn, "alice")
    base = time.time() + 3600
    cap = store.MAX_SESSIONS_PER_USER
    for i in range(cap):
        assert tx(conn, store.add_session, f"bob-{i}", "bob", base + i) == []
    tx(conn, store.add_session, "alice-0", "alice", base)
    assert tx(conn, store.add_session, "bob-new", "bob", base + cap) == [store.token_digest("bob-0")]
    assert store.session_user(conn, "bob-0") is None
    assert store.session_user(conn, "bob-1") is not None and store.session_user(conn, "bob-new") is not None
    assert store.session_user(conn, "alice-0") is not None  # another user's sessions are not touched
    live = conn.execute("SELECT count(*) FROM sessions WHERE username = 'bob' AND revoked = 0").fetchone()[0]
    assert live == cap
    assert tx(conn, store.add_session, "bob-newer", "bob", base + cap + 1) == [store.token_digest("bob-1")]


def test_expired_and_revoked_sessions_do_not_count_against_the_cap(conn):
    add_user(conn, "bob")
    now = time.time()
    tx(conn, store.add_session, "expired", "bob", now - 10)
    tx(conn, store.add_session, "revoked", "bob", now + 3600)
    tx(conn, store.revoke_session, "revoked")
    for i in range(store.MAX_SESSIONS_PER_USER - 1):
        tx(conn, store.add_session, f"live-{i}", "bob", now + 3600 + i)
    assert tx(conn, store.add_session, "last", "bob", now + 7200) == []


def test_sessions_expired_for_over_a_day_are_deleted(conn):
    add_user(conn, "bob")
    now = time.time()
    tx(conn, store.add_session, "ancient", "bob", now - 2 * 86400)
    tx(conn, store.add_session, "recent", "bob", now - 60)
    tx(conn, store.add_session, "fresh", "bob", now + 3600)
    digests = {r[0] for r in conn.execute("SELECT token_sha256 FROM sessions")}
    assert digests == {store.token_digest("recent"), store.token_digest("fresh")}


# ------------------------------------------------------------ users and links --


def test_a_taken_username_is_refused(conn):
    add_user(conn, "bob", [("alpha", "A-1")])
    with pytest.raises(AlreadyExists):
        tx(conn, store.add_user, "bob", "another-hash", [])
    assert store.password_hash(conn, "bob") == "hash-of-bob"
    assert store.password_hash(conn, "nobody") is None


def test_links_are_listed_sorted_and_relinking_ones_own_account_is_harmless(conn):
    add_user(conn, "bob", [("beta", "B-1"), ("alpha", "A-2"), ("alpha", "A-1")])
    assert store.links_of(conn, "bob") == [("alpha", "A-1"), ("alpha", "A-2"), ("beta", "B-1")]
    assert tx(conn, store.add_link, "bob", "alpha", "A-1") == [("alpha", "A-1"), ("alpha", "A-2"), ("beta", "B-1")]
    assert count(conn, "links") == 3


def test_an_account_linked_to_another_user_is_refused(conn):
    add_user(conn, "bob", [("alpha", "A-1")])
    add_user(conn, "alice")
    with pytest.raises(AlreadyExists):
        tx(conn, store.add_link, "alice", "alpha", "A-1")
    with pytest.raises(AlreadyExists):
        tx(conn, store.add_user, "carol", "hash", [("alpha", "A-1")])
    assert store.links_of(conn, "alice") == []
    assert rows(conn, "SELECT username FROM links WHERE account_id = 'A-1'") == [("bob",)]
