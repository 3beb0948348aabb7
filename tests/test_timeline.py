"""app/timeline.py: the 2PC log lines of every process folded into one row per payment."""

from __future__ import annotations

from app.model import LogRecord
from app.timeline import Timeline

T0 = 1_000.0


def ev(process: str, phase: str, t: float = T0, **fields) -> LogRecord:
    return LogRecord(time=t, process=process, level="info", event="2pc", fields={"phase": phase, **fields})


def begin(txn: str = "t1", t: float = T0, from_bank: str = "BankA", to_bank: str = "BankB") -> LogRecord:
    return ev("gateway", "begin", t, txn=txn, user="alice", amount_cents=1250,
              from_bank=from_bank, from_account="A-1001", to_bank=to_bank, to_account="B-2001")


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
    assert row.decision == "" and row.latency_ms is None


def test_payment_inside_one_bank_has_one_participant():
    _, row = fold(begin(from_bank="BankA", to_bank="BankA"))
    assert [p.bank for p in row.participants] == ["BankA"]


def test_happy_commit_as_the_gateway_logs_it_now():
    """begin (prepares sent), the banks' own votes, decision, one acked line for both banks."""
    _, row = fold(begin())
    assert phases(row) == {"BankA": "prepare sent", "BankB": "prepare sent"}
    _, row = fold(
        begin(),
        ev("BankA", "vote", txn="t1", vote="YES"),
        ev("BankB", "vote", txn="t1", vote="YES"),
        ev("gateway", "decision", txn="t1", decision="COMMIT"),
        ev("BankA", "committed", T0 + 0.008, txn="t1"),
        ev("gateway", "acked", T0 + 0.010, txn="t1", banks=["BankA", "BankB"], decision="COMMIT"),
    )
    assert row.decision == "COMMIT"
    assert phases(row) == {"BankA": "committed", "BankB": "committed"}
    assert row.latency_ms == 10.0


def test_happy_commit_with_latency_from_begin_to_last_ack():
    tl, row = fold(
        begin(),
        ev("gateway", "prepare_sent", txn="t1", bank="BankA"),
        ev("gateway", "prepare_sent", txn="t1", bank="BankB"),
        ev("BankA", "vote", txn="t1", vote="YES"),
        ev("gateway", "vote", txn="t1", bank="BankA", vote="YES"),
        ev("gateway", "vote", txn="t1", bank="BankB", vote="YES"),
        ev("gateway", "decision", txn="t1", decision="COMMIT"),
        ev("gateway", "acked", T0 + 0.010, txn="t1", bank="BankA", decision="COMMIT"),
    )
    assert row.decision == "COMMIT" and row.reason == ""
    assert row.latency_ms is None  # BankB has not acknowledged yet
    _, row = fold(ev("BankB", "committed", T0 + 0.012, txn="t1"),
                  ev("gateway", "acked", T0 + 0.014, txn="t1", bank="BankB", decision="COMMIT"),
                  timeline=tl)
    assert phases(row) == {"BankA": "committed", "BankB": "committed"}
    assert row.latency_ms == 14.0


def test_mid_prepare_shows_each_participant():
    _, row = fold(begin(), ev("gateway", "prepare_sent", txn="t1", bank="BankA"),
                  ev("gateway", "prepare_sent", txn="t1", bank="BankB"), ev("BankA", "vote", txn="t1", vote="YES"))
    assert phases(row) == {"BankA": "voted yes", "BankB": "prepare sent"}
    assert row.decision == "" and not row.in_doubt


def test_insufficient_funds_is_a_decline():
    _, row = fold(
        begin(),
        ev("BankA", "vote", txn="t1", vote="NO", reason="insufficient funds"),
        ev("gateway", "vote", txn="t1", bank="BankA", vote="NO", reason="insufficient funds"),
        ev("gateway", "vote", txn="t1", bank="BankB", vote="YES"),
        ev("gateway", "decision", txn="t1", decision="ABORT", reason="insufficient funds"),
    )
    assert row.decision == "ABORT" and row.reason == "declined: insufficient funds"
    assert phases(row) == {"BankA": "voted no", "BankB": "voted yes"}


def test_bank_offline_aborts_with_its_reason_and_no_answer():
    _, row = fold(
        begin(),
        ev("gateway", "vote", txn="t1", bank="BankA", vote="YES"),
        ev("gateway", "vote", txn="t1", bank="BankB", vote="NONE", code="UNAVAILABLE", reason="BankB offline"),
        ev("gateway", "decision", txn="t1", decision="ABORT", reason="BankB offline"),
        ev("gateway", "acked", txn="t1", bank="BankA", decision="ABORT"),
        ev("gateway", "decision_unacked", txn="t1", bank="BankB", decision="ABORT", code="UNAVAILABLE"),
    )
    assert row.reason == "BankB offline"
    assert phases(row) == {"BankA": "aborted", "BankB": "no answer"}
    assert not row.in_doubt and row.latency_ms is None


def test_unacked_yes_voter_is_in_doubt_until_it_commits():
    tl, row = fold(
        begin(),
        ev("gateway", "vote", txn="t1", bank="BankA", vote="YES"),
        ev("gateway", "vote", txn="t1", bank="BankB", vote="YES"),
        ev("gateway", "decision", txn="t1", decision="COMMIT"),
        ev("gateway", "acked", txn="t1", bank="BankA", decision="COMMIT"),
        ev("gateway", "decision_unacked", txn="t1", bank="BankB", decision="COMMIT", code="UNAVAILABLE"),
    )
    assert row.in_doubt and phases(row)["BankB"] == "in doubt"
    _, row = fold(ev("BankB", "in_doubt", txn="t1"), ev("BankB", "committed", txn="t1"), timeline=tl)
    assert not row.in_doubt and phases(row)["BankB"] == "committed"


def test_late_yes_from_a_bank_beats_the_gateways_timeout():
    _, row = fold(
        begin(),
        ev("gateway", "vote", txn="t1", bank="BankB", vote="NONE", code="DEADLINE_EXCEEDED", reason="BankB timed out"),
        ev("BankB", "vote", txn="t1", vote="YES"),
        ev("gateway", "decision", txn="t1", decision="ABORT", reason="BankB timed out"),
    )
    assert phases(row)["BankB"] == "voted yes" and row.reason == "BankB timed out"


def test_phases_never_move_back():
    _, row = fold(begin(), ev("BankA", "committed", txn="t1"), ev("BankA", "in_doubt", txn="t1"),
                  ev("gateway", "prepare_sent", txn="t1", bank="BankA"))
    assert phases(row)["BankA"] == "committed"


def test_decision_is_written_once():
    tl, _ = fold(begin(), ev("gateway", "decision", txn="t1", decision="COMMIT"))
    assert tl.apply(ev("gateway", "resolved", txn="t1", decision="ABORT")) is None
    assert tl.rows()[0].decision == "COMMIT"


def test_resolve_without_decision_is_presumed_abort():
    _, row = fold(begin(), ev("BankB", "in_doubt", txn="t1"), ev("gateway", "resolved", txn="t1", decision="ABORT"))
    assert row.decision == "ABORT" and row.reason == "presumed abort" and row.in_doubt


def test_other_records_and_unknown_txns_change_nothing():
    tl = Timeline()
    assert tl.apply(LogRecord(T0, "gateway", "info", "rpc", {"method": "Pay"})) is None
    assert tl.apply(ev("BankA", "committed", txn="never-began")) is None
    assert tl.apply(ev("gateway", "vote")) is None
    assert len(tl) == 0


def test_memory_is_bounded_oldest_first():
    tl = Timeline(max_rows=3)
    for i in range(5):
        tl.apply(begin(txn=f"t{i}", t=T0 + i))
    assert [r.txn_id for r in tl.rows()] == ["t2", "t3", "t4"]
    assert tl.apply(ev("BankA", "committed", txn="t0")) is None


def test_duplicate_begin_is_ignored():
    tl, _ = fold(begin())
    assert tl.apply(begin(t=T0 + 5)) is None and tl.rows()[0].started_at == T0
