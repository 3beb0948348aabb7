"""app/timeline.py: the 2PC log lines of every process folded into one row per payment."""

from __future__ import annotations

from app.model import BankStep, LogRecord
from app.timeline import Timeline
from backend.common.events import Event, Phase, Vote
from backend.common.states import Decision

T0 = 1_000.0


def ev(process: str, phase: Phase, t: float = T0, **fields) -> LogRecord:
    return LogRecord(time=t, process=process, level="info", event=Event.TWOPC, fields={"phase": phase, **fields})


def begin(txn: str = "t1", t: float = T0, from_bank: str = "BankA", to_bank: str = "BankB") -> LogRecord:
    return ev(
        "gateway",
        Phase.BEGIN,
        t,
        txn=txn,
        user="alice",
        amount_cents=1250,
        from_bank=from_bank,
        from_account="A-1001",
        to_bank=to_bank,
        to_account="B-2001",
    )


def phases(row) -> dict[str, str]:
    return {p.bank: p.phase for p in row.participants}


def fold(*records: LogRecord, timeline: Timeline | None = None):
    tl = timeline or Timeline()
    last = None
    for r in records:
        last = tl.apply(r) or last
    return tl, last


def test_begin_makes_a_row_with_payer_first():
    _, row = fold(begin())
    assert row.txn_id == "t1" and row.payer == "BankA/A-1001" and row.payee == "BankB/B-2001"
    assert row.amount_cents == 1250 and row.user == "alice" and row.started_at == T0
    assert [p.bank for p in row.participants] == ["BankA", "BankB"]
    assert row.decision == Decision.PREPARING and row.latency_ms is None


def test_payment_inside_one_bank_has_one_participant():
    _, row = fold(begin(from_bank="BankA", to_bank="BankA"))
    assert [p.bank for p in row.participants] == ["BankA"]


def test_happy_commit_as_the_gateway_logs_it_now():
    """begin (prepares sent), the banks' own votes, decision, one acked line for both banks."""
    _, row = fold(begin())
    assert phases(row) == {"BankA": BankStep.PREPARE_SENT, "BankB": BankStep.PREPARE_SENT}
    _, row = fold(
        begin(),
        ev("BankA", Phase.VOTE, txn="t1", vote=Vote.YES),
        ev("BankB", Phase.VOTE, txn="t1", vote=Vote.YES),
        ev("gateway", Phase.DECISION, txn="t1", decision=Decision.COMMIT),
        ev("BankA", Phase.COMMITTED, T0 + 0.008, txn="t1"),
        ev("gateway", Phase.ACKED, T0 + 0.010, txn="t1", banks=["BankA", "BankB"], decision=Decision.COMMIT),
    )
    assert row.decision == Decision.COMMIT
    assert phases(row) == {"BankA": BankStep.COMMITTED, "BankB": BankStep.COMMITTED}
    assert row.latency_ms == 10.0


def test_happy_commit_with_latency_from_begin_to_last_ack():
    tl, row = fold(
        begin(),
        ev("BankA", Phase.VOTE, txn="t1", vote=Vote.YES),
        ev("gateway", Phase.VOTE, txn="t1", bank="BankA", vote=Vote.YES),
        ev("gateway", Phase.VOTE, txn="t1", bank="BankB", vote=Vote.YES),
        ev("gateway", Phase.DECISION, txn="t1", decision=Decision.COMMIT),
        ev("gateway", Phase.ACKED, T0 + 0.010, txn="t1", bank="BankA", decision=Decision.COMMIT),
    )
    assert row.decision == Decision.COMMIT and row.reason == ""
    assert row.latency_ms is None  # BankB has not acknowledged yet
    _, row = fold(
        ev("BankB", Phase.COMMITTED, T0 + 0.012, txn="t1"),
        ev("gateway", Phase.ACKED, T0 + 0.014, txn="t1", bank="BankB", decision=Decision.COMMIT),
        timeline=tl,
    )
    assert phases(row) == {"BankA": BankStep.COMMITTED, "BankB": BankStep.COMMITTED}
    assert row.latency_ms == 14.0


def test_mid_prepare_shows_each_participant():
    _, row = fold(begin(), ev("BankA", Phase.VOTE, txn="t1", vote=Vote.YES))
    assert phases(row) == {"BankA": BankStep.VOTED_YES, "BankB": BankStep.PREPARE_SENT}
    assert row.decision == Decision.PREPARING and not row.in_doubt


def test_insufficient_funds_is_a_decline():
    _, row = fold(
        begin(),
        ev("BankA", Phase.VOTE, txn="t1", vote=Vote.NO, reason="insufficient funds"),
        ev("gateway", Phase.VOTE, txn="t1", bank="BankA", vote=Vote.NO, reason="insufficient funds"),
        ev("gateway", Phase.VOTE, txn="t1", bank="BankB", vote=Vote.YES),
        ev("gateway", Phase.DECISION, txn="t1", decision=Decision.ABORT, reason="insufficient funds"),
    )
    assert row.decision == Decision.ABORT and row.reason == "declined: insufficient funds"
    assert phases(row) == {"BankA": BankStep.VOTED_NO, "BankB": BankStep.VOTED_YES}


def test_bank_offline_aborts_with_its_reason_and_no_answer():
    _, row = fold(
        begin(),
        ev("gateway", Phase.VOTE, txn="t1", bank="BankA", vote=Vote.YES),
        ev("gateway", Phase.VOTE, txn="t1", bank="BankB", vote=Vote.NONE, code="UNAVAILABLE", reason="BankB offline"),
        ev("gateway", Phase.DECISION, txn="t1", decision=Decision.ABORT, reason="BankB offline"),
        ev("gateway", Phase.ACKED, txn="t1", bank="BankA", decision=Decision.ABORT),
        ev("gateway", Phase.DECISION_UNACKED, txn="t1", bank="BankB", decision=Decision.ABORT, code="UNAVAILABLE"),
    )
    assert row.reason == "BankB offline"
    assert phases(row) == {"BankA": BankStep.ABORTED, "BankB": BankStep.NO_ANSWER}
    assert not row.in_doubt and row.latency_ms is None


def test_unacked_yes_voter_is_in_doubt_until_it_commits():
    tl, row = fold(
        begin(),
        ev("gateway", Phase.VOTE, txn="t1", bank="BankA", vote=Vote.YES),
        ev("gateway", Phase.VOTE, txn="t1", bank="BankB", vote=Vote.YES),
        ev("gateway", Phase.DECISION, txn="t1", decision=Decision.COMMIT),
        ev("gateway", Phase.ACKED, txn="t1", bank="BankA", decision=Decision.COMMIT),
        ev("gateway", Phase.DECISION_UNACKED, txn="t1", bank="BankB", decision=Decision.COMMIT, code="UNAVAILABLE"),
    )
    assert row.in_doubt and phases(row)["BankB"] == BankStep.IN_DOUBT
    _, row = fold(ev("BankB", Phase.IN_DOUBT, txn="t1"), ev("BankB", Phase.COMMITTED, txn="t1"), timeline=tl)
    assert not row.in_doubt and phases(row)["BankB"] == BankStep.COMMITTED


def test_late_yes_from_a_bank_beats_the_gateways_timeout():
    _, row = fold(
        begin(),
        ev(
            "gateway",
            Phase.VOTE,
            txn="t1",
            bank="BankB",
            vote=Vote.NONE,
            code="DEADLINE_EXCEEDED",
            reason="BankB timed out",
        ),
        ev("BankB", Phase.VOTE, txn="t1", vote=Vote.YES),
        ev("gateway", Phase.DECISION, txn="t1", decision=Decision.ABORT, reason="BankB timed out"),
    )
    assert phases(row)["BankB"] == BankStep.VOTED_YES and row.reason == "BankB timed out"


def test_phases_never_move_back():
    _, row = fold(
        begin(),
        ev("BankA", Phase.COMMITTED, txn="t1"),
        ev("BankA", Phase.IN_DOUBT, txn="t1"),
        ev("gateway", Phase.VOTE, txn="t1", bank="BankA", vote=Vote.YES),
    )
    assert phases(row)["BankA"] == BankStep.COMMITTED


def test_decision_is_written_once():
    tl, _ = fold(begin(), ev("gateway", Phase.DECISION, txn="t1", decision=Decision.COMMIT))
    assert tl.apply(ev("gateway", Phase.RESOLVED, txn="t1", decision=Decision.ABORT)) is None
    assert tl.rows()[0].decision == Decision.COMMIT


def test_resolve_without_decision_is_presumed_abort():
    _, row = fold(
        begin(), ev("BankB", Phase.IN_DOUBT, txn="t1"), ev("gateway", Phase.RESOLVED, txn="t1", decision=Decision.ABORT)
    )
    assert row.decision == Decision.ABORT and row.reason == "presumed abort" and row.in_doubt


def test_other_records_and_unknown_txns_change_nothing():
    tl = Timeline()
    assert tl.apply(LogRecord(T0, "gateway", "info", Event.RPC, {"method": "Pay"})) is None
    assert tl.apply(ev("BankA", Phase.COMMITTED, txn="never-began")) is None
    assert tl.apply(ev("gateway", Phase.VOTE)) is None
    assert len(tl) == 0


def test_memory_is_bounded_oldest_first():
    tl = Timeline(max_rows=3)
    for i in range(5):
        tl.apply(begin(txn=f"t{i}", t=T0 + i))
    assert [r.txn_id for r in tl.rows()] == ["t2", "t3", "t4"]
    assert tl.apply(ev("BankA", Phase.COMMITTED, txn="t0")) is None


def test_duplicate_begin_is_ignored():
    tl, _ = fold(begin())
    assert tl.apply(begin(t=T0 + 5)) is None and tl.rows()[0].started_at == T0
