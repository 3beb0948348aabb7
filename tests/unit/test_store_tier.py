"""The gateway store's tier functions on their own: membership rows and heartbeats,
takeover as a conditional write, owners of payments, and failed logins counted for
the whole tier."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from backend.common.states import Decision, Outcome
from backend.gateway import store
from backend.gateway.store import Heartbeat, PaymentFields, Replica
from tests.unit.sqlite_tx import open_migrated, tx


@pytest.fixture
def conn(tmp_path: Path):
    connection = open_migrated(tmp_path / "gateway.sqlite", store.MIGRATIONS)
    try:
        yield connection
    finally:
        connection.close()


def replica(replica_id: str, heartbeat_at: float) -> Replica:
    return Replica(replica_id, f"127.0.0.1:{5000 + len(replica_id)}", "local", 1.0, heartbeat_at, 0)


def payment(conn: sqlite3.Connection, key: str, txn_id: str, owner: str) -> None:
    fields = PaymentFields("bob", key, "alpha", "A-1", "beta", "B-1", 100)
    assert tx(conn, store.claim, fields, txn_id, owner).kind == store.ClaimKind.NEW


def test_heartbeats_land_for_the_registered_incarnation_only(conn):
    tx(conn, store.register, replica("gw-1", 10.0), "inc-a")
    assert tx(conn, store.heartbeat, "gw-1", "inc-a", 11.0, 3) == Heartbeat.RECORDED
    assert [(r.heartbeat_at, r.in_flight) for r in store.replicas(conn)] == [(11.0, 3)]
    tx(conn, store.register, replica("gw-1", 12.0), "inc-b")  # a newer process with the same id
    assert tx(conn, store.heartbeat, "gw-1", "inc-a", 13.0, 0) == Heartbeat.REPLACED
    assert store.replicas(conn)[0].heartbeat_at == 12.0  # the old one wrote nothing
    tx(conn, store.take_over, "gw-1", "gw-2", 20.0)
    assert tx(conn, store.heartbeat, "gw-1", "inc-b", 21.0, 0) == Heartbeat.TAKEN_OVER


def test_a_takeover_is_conditional_and_takes_only_unfinished_work(conn):
    tx(conn, store.register, replica("gw-1", 10.0), "inc")
    payment(conn, "k-preparing", "t-preparing", "gw-1")
    payment(conn, "k-unacked", "t-unacked", "gw-1")
    payment(conn, "k-done", "t-done", "gw-1")
    payment(conn, "k-other", "t-other", "gw-3")
    tx(conn, store.decide, "t-unacked", Decision.COMMIT, Outcome.SUCCEEDED, "")
    tx(conn, store.decide, "t-done", Decision.COMMIT, Outcome.SUCCEEDED, "")
    tx(conn, store.ack_pairs, [("t-done", "alpha"), ("t-done", "beta")])

    assert tx(conn, store.take_over, "gw-1", "gw-2", 9.0) is None  # it beat after the cut-off: alive
    taken = tx(conn, store.take_over, "gw-1", "gw-2", 10.5)
    assert sorted(taken) == [("t-preparing", "PREPARING"), ("t-unacked", "COMMIT")]
    assert tx(conn, store.take_over, "gw-1", "gw-3", 10.5) is None  # a second survivor finds it done
    owners = dict(conn.execute("SELECT txn_id, owner FROM payments").fetchall())
    assert owners == {"t-preparing": "gw-2", "t-unacked": "gw-2", "t-done": "gw-1", "t-other": "gw-3"}
    assert store.preparing(conn, "gw-2") == ["t-preparing"]
    assert store.unacked(conn, "gw-2", 10) == [
        ("t-unacked", "alpha", Decision.COMMIT),
        ("t-unacked", "beta", Decision.COMMIT),
    ]
    assert store.unacked(conn, "gw-1", 10) == []


def test_a_clean_leave_runs_the_lease_out_at_once(conn):
    tx(conn, store.register, replica("gw-1", 50.0), "inc")
    tx(conn, store.leave, "gw-1", "other-incarnation")
    assert store.replicas(conn)[0].heartbeat_at == 50.0  # not ours to end
    tx(conn, store.leave, "gw-1", "inc")
    assert store.replicas(conn)[0].heartbeat_at == 0
    assert tx(conn, store.take_over, "gw-1", "gw-2", 1.0) == []


def test_failed_logins_lock_after_the_limit_within_the_window_and_a_success_clears_them(conn):
    tx(conn, store.add_user, "bob", "hash", [])
    for i in range(4):
        assert tx(conn, store.login_failed, "bob", 100.0 + i, 60.0, 5, 30.0) == 0.0
    assert store.login_facts(conn, "bob") == ("hash", 4, 0.0)
    assert tx(conn, store.login_failed, "bob", 104.0, 60.0, 5, 30.0) == 134.0
    assert store.login_facts(conn, "bob")[2] == 134.0
    assert tx(conn, store.login_failed, "bob", 110.0, 60.0, 5, 30.0) == 134.0  # still locked
    assert store.login_facts(conn, "nobody") == (None, 0, 0.0)


def test_failures_further_apart_than_the_window_never_lock(conn):
    tx(conn, store.add_user, "carol", "hash", [])
    for i in range(12):
        assert tx(conn, store.login_failed, "carol", 1000.0 + i * 16.0, 60.0, 5, 30.0) == 0.0
