"""app/timeline.py: the 2PC log lines of every process folded into one row per payment."""

from __future__ import annotations

from app.model import BankStep, LogRecord
from app.timeline import Stories, Timeline
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


# ------------------------------------------------- retries and stories --
def keyed_begin(txn: str, key: str = "k-1", user: str = "alice", t: float = T0) -> LogRecord:
    record = begin(txn, t)
    return LogRecord(
        record.time, record.process, record.level, record.event, {**record.fields, "key": key, "user": user}
    )


def test_retries_under_one_key_are_numbered_attempts_of_one_payment():
    tl, first = fold(keyed_begin("t1"))
    _, second = fold(keyed_begin("t2", t=T0 + 3), timeline=tl)
    _, other_user = fold(keyed_begin("t3", user="bob"), timeline=tl)
    _, no_key = fold(begin("t4"))
    assert (first.key, first.attempt, second.attempt, other_user.attempt) == ("k-1", 1, 2, 1)
    assert first.payment == second.payment != other_user.payment
    assert no_key.key == "" and no_key.attempt == 1 and no_key.payment == "t4"


def test_attempt_numbers_are_bounded_memory():
    tl = Timeline(max_rows=2)
    for i in range(5):
        tl.apply(keyed_begin(f"t{i}", key=f"k{i}"))
    assert len(tl._attempts) == 2


def test_a_story_has_the_phases_with_their_times_and_the_lines_of_its_transaction():
    records = [
        keyed_begin("t1"),
        ev("BankA", Phase.VOTE, T0 + 0.004, txn="t1", vote=Vote.YES),
        ev("gateway", Phase.VOTE, T0 + 0.006, txn="t1", bank="BankB", vote=Vote.NONE, code="UNAVAILABLE"),
        ev("gateway", Phase.DECISION, T0 + 0.007, txn="t1", decision=Decision.ABORT, reason="BankB offline"),
        ev("BankB", Phase.IN_DOUBT, T0 + 2.5, txn="t1"),
        LogRecord(T0 + 0.014, "gateway", "warning", Event.RPC, {"method": "Pay", "txn": "t1"}),
        LogRecord(T0, "gateway", "info", Event.RPC, {"method": "Pay", "txn": "other"}),
    ]
    tl, stories = Timeline(), Stories()
    for record in records:
        stories.add_record(record)
        if (row := tl.apply(record)) is not None:
            stories.add_row(row)
    story = stories.story("t1")
    assert story is not None and stories.story("never") is None
    assert [(s.after_ms, s.process, s.what) for s in story.steps] == [
        (0.0, "gateway", "began BankA/A-1001 → BankB/B-2001; prepare sent to BankA, BankB"),
        (4.0, "BankA", "voted YES"),
        (6.0, "gateway", "no vote from BankB (UNAVAILABLE)"),
        (7.0, "gateway", "decided ABORT: BankB offline"),
        (2500.0, "BankB", "in doubt: voted YES, no decision heard; asking the gateway"),
    ]
    assert [r.time for r in story.lines] == sorted(r.time for r in records[:6]), "its lines, in time order"
    assert story.attempts == (story.row,)


def test_stories_are_bounded_and_say_what_they_dropped():
    stories = Stories(max_txns=2, max_lines=3)
    for txn in ("t1", "t2", "t3"):
        for i in range(5):
            stories.add_record(LogRecord(T0 + i, "gateway", "info", Event.RPC, {"txn": txn}))
    tl = Timeline()
    for txn in ("t1", "t2", "t3"):
        stories.add_row(tl.apply(begin(txn)))  # type: ignore[arg-type]
    assert stories.story("t1") is None
    story = stories.story("t3")
    assert story is not None and len(story.lines) == 3 and story.lines_dropped == 2
