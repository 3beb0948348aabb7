"""`strife chaos`: a short campaign passes, and the checker catches doctored ledgers."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.chaos import check as chaos_check
from app.chaos import nemesis as chaos_nemesis
from backend.bank import ledger
from backend.client.outbox import Outbox
from backend.common.db import connect, migrate
from backend.common.states import Decision, Outcome, PaymentStatus
from backend.gateway import store
from tests.stack import processes_naming

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------ the campaign --
def _campaign(*args: str) -> subprocess.CompletedProcess:
    """`strife chaos` with 3 clients, JSON out, its directory kept for the leftover check."""
    command = [sys.executable, "-m", "app.cli", "chaos", *args, "--clients", "3", "--json", "--keep"]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=140, env={**os.environ, "COLUMNS": "200"}
    )


@pytest.mark.timeout(150)
def test_short_campaign_passes_every_invariant():
    """The CI version: real processes, real faults, every invariant PASS, exit 0."""
    done = _campaign("--duration", "20", "--seed", "1")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    outcome = json.loads(done.stdout)
    assert outcome["ok"] and outcome["seed"] == 1 and not outcome["problems"]
    assert [v["number"] for v in outcome["invariants"]] == [1, 2, 3, 4, 5, 6]
    assert all(v["ok"] and v["checked"] > 0 for v in outcome["invariants"]), outcome["invariants"]
    did, faults = outcome["did"], outcome["faults"]
    assert did["succeeded"] > 0 and did["must-decline (amount > all money) declined"] > 0
    assert did["must-decline that did not end DECLINED"] == 0
    assert did["same-key replays during the run"] > 0
    assert sum(faults[k] for k in chaos_nemesis.KINDS) >= 4, faults
    assert outcome["wall_s"] < 110
    # Every process it started is gone: no command line names its directory.
    root = outcome["data_dir"]
    assert root and Path(root).is_dir()
    leftovers = processes_naming(root)
    shutil.rmtree(root, ignore_errors=True)
    assert not leftovers, leftovers


@pytest.mark.timeout(150)
def test_short_campaign_on_postgres_survives_killing_the_database_server():
    """--db postgres: the same invariants, read from the databases, with the server SIGKILLed and
    restarted under load (kill_db; seed 4 plans one at 2.1 s for 2.4 s); no postgres left behind."""
    done = _campaign("--db", "postgres", "--duration", "10", "--seed", "4")
    outcome = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    root = outcome.get("data_dir")
    leftovers = processes_naming(root) if root else []
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert outcome["ok"] and outcome["engine"] == "postgres" and not outcome["problems"]
    assert all(v["ok"] and v["checked"] > 0 for v in outcome["invariants"]), outcome["invariants"]
    assert outcome["faults"]["kill_db"] >= 1 and outcome["did"]["succeeded"] > 0, outcome
    assert "--db postgres" in outcome["command"]
    shutil.rmtree(root, ignore_errors=True)
    assert not leftovers, leftovers  # the database server included: its command line names the directory


def test_the_seed_replays_the_schedule():
    banks, clients = ["Bank01", "Bank02", "Bank03"], ["c0", "c1", "c2"]
    one = chaos_nemesis.plan(7, 60, banks, clients)
    assert one == chaos_nemesis.plan(7, 60, banks, clients)
    assert one != chaos_nemesis.plan(8, 60, banks, clients)
    assert {f.kind for f in one} == set(chaos_nemesis.KINDS)  # no kill_db: the stack has no database server
    on_db = chaos_nemesis.plan(7, 60, banks, clients, db=True)
    assert {f.kind for f in on_db} == set(chaos_nemesis.KINDS) | {"kill_db"}
    assert {f.target for f in on_db if f.kind == "kill_db"} == {chaos_nemesis.DB_TARGET}
    assert all(f.hold_s > 1.0 for f in one if f.kind == "freeze_bank")  # longer than the 2PC timeout
    for target in {f.target for f in one}:  # one fault at a time per target
        mine = [f for f in one if f.target == target]
        assert all(a.at_s + a.hold_s <= b.at_s for a, b in itertools.pairwise(mine))


# ------------------------------------------------------------- the checker --
class World:
    """Real SQLite files with the real schemas: two banks, a gateway log, one client.
    Payment 1 (300 cents) committed; payment 2 (5000 cents) declined."""

    A, B = "Bank01", "Bank02"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bank_files = {self.A: tmp / "bank-A.sqlite", self.B: tmp / "bank-B.sqlite"}
        self.gateway_file = tmp / "gateway.sqlite"
        self.profile = tmp / "alice"
        self.profile.mkdir()
        self.banks = {}
        for name, path in self.bank_files.items():
            conn = connect(path)
            migrate(conn, ledger.MIGRATIONS)
            ledger.seed(
                conn, [{"id": f"{name}-acc", "owner": "alice" if name == self.A else "bob", "balance_cents": 1000}]
            )
            self.banks[name] = conn
        self.gw = connect(self.gateway_file)
        migrate(self.gw, store.MIGRATIONS)
        self.outbox = Outbox(self.profile / "outbox.sqlite")
        self.ok_key, self.ok_txn = self.pay("t1", 300)
        self.no_key, self.no_txn = self.pay("t2", 5000)

    def pay(self, txn: str, amount: int, key: str | None = None) -> tuple[str, str]:
        if key is None:
            key = self.outbox.add("alice", self.B, f"{self.B}-acc", amount, self.A, f"{self.A}-acc").idempotency_key
        fields = store.PaymentFields("alice", key, self.A, f"{self.A}-acc", self.B, f"{self.B}-acc", amount)
        assert store.claim(self.gw, fields, txn).kind == "new"
        yes_a = ledger.prepare(self.banks[self.A], txn, [(f"{self.A}-acc", -amount)]).yes
        yes_b = ledger.prepare(self.banks[self.B], txn, [(f"{self.B}-acc", amount)]).yes
        if yes_a and yes_b:
            store.decide(self.gw, txn, Decision.COMMIT, Outcome.SUCCEEDED, "")
            for conn in self.banks.values():
                ledger.commit(conn, txn)
            status = PaymentStatus.SUCCEEDED
        else:
            store.decide(self.gw, txn, Decision.ABORT, Outcome.DECLINED, "insufficient funds")
            for conn in self.banks.values():
                ledger.abort(conn, txn)
            status = PaymentStatus.DECLINED
        store.ack_pairs(self.gw, [(txn, self.A), (txn, self.B)])
        self.outbox.finish(key, status, payment_id=txn)
        (self.profile / chaos_check.JOURNAL_FILE).open("a").write(json.dumps({"q": key}) + "\n")
        return key, txn

    def check(self, again: list[chaos_check.Again] | None = None) -> dict[int, chaos_check.Verdict]:
        snap = chaos_check.load(
            {(self.A, f"{self.A}-acc"): 1000, (self.B, f"{self.B}-acc"): 1000},
            self.bank_files,
            self.gateway_file,
            {"alice": self.profile},
        )
        return {v.number: v for v in chaos_check.check(snap, again)}


def _failed(verdicts: dict[int, chaos_check.Verdict]) -> set[int]:
    return {n for n, v in verdicts.items() if not v.ok}


def _offenders(v: chaos_check.Verdict) -> str:
    return "\n".join(v.offenders)


def test_checker_passes_a_consistent_world(tmp_path):
    world = World(tmp_path)
    again = [
        chaos_check.Again("alice", world.ok_key, PaymentStatus.SUCCEEDED, world.ok_txn),
        chaos_check.Again("alice", world.no_key, PaymentStatus.DECLINED, world.no_txn),
    ]
    verdicts = world.check(again)
    assert _failed(verdicts) == set(), {n: v.offenders for n, v in verdicts.items()}
    assert verdicts[3].checked == 1 and verdicts[6].checked == 2


def test_checker_catches_a_txn_committed_at_one_bank_only(tmp_path):
    world = World(tmp_path)
    txn = "t3-split"
    fields = store.PaymentFields("alice", "k-split", world.A, f"{world.A}-acc", world.B, f"{world.B}-acc", 100)
    store.claim(world.gw, fields, txn)
    store.decide(world.gw, txn, Decision.COMMIT, Outcome.SUCCEEDED, "")
    ledger.prepare(world.banks[world.A], txn, [(f"{world.A}-acc", -100)])
    ledger.commit(world.banks[world.A], txn)  # Bank02 never heard of it
    verdicts = world.check()
    assert {1, 4} <= _failed(verdicts)
    assert f"txn {txn} split" in _offenders(verdicts[4])
    assert "-100" in _offenders(verdicts[1])  # money destroyed


def test_checker_catches_a_key_charged_twice(tmp_path):
    world = World(tmp_path)
    # A second payment under the same key, committed at both banks (as if the claim had failed).
    world.gw.execute("DELETE FROM idempotency_keys WHERE idem_key = ?", (world.ok_key,))
    fields = store.PaymentFields("alice", world.ok_key, world.A, f"{world.A}-acc", world.B, f"{world.B}-acc", 300)
    store.claim(world.gw, fields, "t1-again")
    for name, delta in ((world.A, -300), (world.B, 300)):
        ledger.prepare(world.banks[name], "t1-again", [(f"{name}-acc", delta)])
        ledger.commit(world.banks[name], "t1-again")
    store.decide(world.gw, "t1-again", Decision.COMMIT, Outcome.SUCCEEDED, "")
    verdicts = world.check()
    assert 5 in _failed(verdicts)
    assert f"key {world.ok_key} of alice committed 2 times" in _offenders(verdicts[5])
    assert "t1-again" in _offenders(verdicts[5])


def test_checker_catches_money_created_and_a_journal_moving_twice(tmp_path):
    world = World(tmp_path)
    bank = world.banks[world.B]
    bank.execute("UPDATE accounts SET balance_cents = balance_cents + 300")
    bank.execute(
        "INSERT INTO journal (txn_id, account_id, delta_cents, balance_after_cents, at) VALUES (?, ?, 300, 1600, 0)",
        (world.ok_txn, f"{world.B}-acc"),
    )
    verdicts = world.check()
    assert {1, 5} <= _failed(verdicts)
    assert "total 2300 cents != starting 2000 cents (diff +300)" in _offenders(verdicts[1])
    assert f"txn {world.ok_txn} moved {world.B}/{world.B}-acc 2 times" in _offenders(verdicts[5])


def test_checker_catches_a_lost_success_a_hold_a_queued_key_and_a_changed_answer(tmp_path):
    world = World(tmp_path)
    # The client was told SUCCEEDED for a payment the banks never committed.
    key = world.outbox.add("alice", world.B, f"{world.B}-acc", 10, world.A, f"{world.A}-acc").idempotency_key
    world.outbox.finish(key, PaymentStatus.SUCCEEDED, payment_id="t-ghost")
    # A hold left behind, and a payment still in the outbox.
    ledger.prepare(world.banks[world.A], "t-held", [(f"{world.A}-acc", -50)])
    stuck = world.outbox.add("alice", world.B, f"{world.B}-acc", 20, world.A, f"{world.A}-acc").idempotency_key
    again = [chaos_check.Again("alice", world.ok_key, PaymentStatus.SUCCEEDED, "some-other-payment")]
    verdicts = world.check(again)
    assert {3, 4, 5, 6} <= _failed(verdicts)
    assert f"key {key} (payment t-ghost): ABSENT at {world.A}" in _offenders(verdicts[3])
    assert "t-held still PREPARED" in _offenders(verdicts[4]) and "50 cents still held" in _offenders(verdicts[4])
    assert f"key {stuck} of alice still queued" in _offenders(verdicts[5])
    assert (
        f"key {world.ok_key} of alice: first SUCCEEDED {world.ok_txn}, again SUCCEEDED some-other-payment"
        in _offenders(verdicts[6])
    )


def test_checker_catches_a_negative_balance(tmp_path):
    world = World(tmp_path)
    world.banks[world.A].execute(
        "INSERT INTO journal (txn_id, account_id, delta_cents, balance_after_cents, at) VALUES ('t-neg', ?, -800, -100, 0)",
        (f"{world.A}-acc",),
    )
    verdicts = world.check()
    assert 2 in _failed(verdicts)
    assert f"{world.A}/{world.A}-acc at -100 cents after txn t-neg" in _offenders(verdicts[2])
