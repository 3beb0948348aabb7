"""The Graphs panel alone in a tiny app, fed fixed stats, 2PC rows and balances at explicit
times: what each sparkline holds, what the labels say, that the window moves with `now`,
forgets what falls out of it, and that no history grows without bound. One snapshot.

Update the snapshot with `pytest tests/test_graphs_panel.py --snapshot-update`, then look at it
(/work/shared/tools/svg2png) before committing it.
"""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from app.messages import StatsChanged
from app.model import Balances, BankBalances, BankStep, Participant, TxnRow
from app.widgets.graphs_panel import (
    MAX_ABORTED_IDS,
    MAX_BANKS,
    MAX_ROW_LINES,
    MAX_SAMPLES,
    WINDOW_S,
    GraphRow,
    GraphsPanel,
)
from backend.common.states import Decision

pytestmark = pytest.mark.usefixtures("fixed_environment")  # TZ=UTC, no host colours (tests/conftest.py)

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
SIZE = (120, 20)


class GraphsApp(App):
    def __init__(self) -> None:
        super().__init__()
        self.theme = "textual-dark"
        self.animation_level = "none"

    def compose(self) -> ComposeResult:
        yield GraphsPanel()


def payment(n: int, decision: Decision = Decision.ABORT) -> TxnRow:
    done = {Decision.ABORT: BankStep.ABORTED, Decision.COMMIT: BankStep.COMMITTED}.get(decision, BankStep.VOTED_YES)
    return TxnRow(
        txn_id=f"{n:010d}",
        payer="BankA/A-1001",
        payee="BankB/B-2001",
        amount_cents=100,
        participants=(Participant("BankA", done), Participant("BankB", done)),
        decision=decision,
        reason="BankB offline" if decision == Decision.ABORT else "",
        started_at=T0 + n,
    )


def balances(a_cents: int, b_cents: int, b_reachable: bool = True) -> Balances:
    return Balances(
        (
            BankBalances("BankA", True, (), a_cents),
            BankBalances("BankB", b_reachable, (), b_cents if b_reachable else 0),
        ),
        expected_total_cents=a_cents + b_cents,
    )


def row(app: App, graph: str) -> GraphRow:
    return app.query_one(f"#graph-{graph}", GraphRow) if graph[0].islower() else _bank_row(app, graph)


def _bank_row(app: App, bank: str) -> GraphRow:
    return next(r for r in app.query(GraphRow) if r.has_class("bank") and r.name_label.content == bank)


def data(app: App, graph: str) -> list[float]:
    return list(row(app, graph).sparkline.data or ())


# ---------------------------------------------------------------- payments/s --
async def settled(pilot) -> None:
    """Pause until the panel has shown what it was given: it shows once, after the next
    refresh, which on a loaded machine may take more than one pause."""
    panel = pilot.app.query_one(GraphsPanel)
    for _ in range(200):
        await pilot.pause()
        if not panel._show_pending:
            return
    raise AssertionError("the graphs panel never showed what it was given")


async def test_payments_per_second_are_the_stats_right_aligned_on_the_window():
    app = GraphsApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(GraphsPanel)
        panel.now = T0
        panel.record_stats(StatsChanged(tuple(range(1, 31)), 12.0, 41.0), T0)
        await settled(pilot)
        series = data(app, "payments")
        assert len(series) == WINDOW_S
        assert series == [0.0] * 30 + [float(n) for n in range(1, 31)]
        # The value is the mean of the last 5 finished seconds, as in the status bar.
        assert row(app, "payments").value_text == f"{(26 + 27 + 28 + 29 + 30) / 5:.1f}"
        assert row(app, "payments").note_text == "max 30/s"

        # More seconds than the window: only the newest WINDOW_S are shown.
        panel.record_stats(StatsChanged(tuple(range(100)), 12.0, 41.0), T0 + 1)
        await settled(pilot)
        assert data(app, "payments") == [float(n) for n in range(40, 100)]


# ------------------------------------------------------------------ aborts/s --
async def test_aborts_are_counted_once_per_payment_in_the_second_they_were_decided():
    app = GraphsApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(GraphsPanel)
        panel.now = T0 + 10.3  # the finished seconds are T0-50 .. T0+9
        panel.record_txn(payment(1, Decision.PREPARING), T0 + 5.0)  # not decided: not counted
        panel.record_txn(payment(1), T0 + 5.1)
        panel.record_txn(payment(1), T0 + 5.4)  # the same abort upserted again (an ack): once
        panel.record_txn(payment(2), T0 + 5.9)
        panel.record_txn(payment(3, Decision.COMMIT), T0 + 6.0)  # a commit is not an abort
        panel.record_txn(payment(4), T0 + 8.2)
        panel.record_txn(payment(5), T0 + 10.1)  # the second still running: not shown yet
        await settled(pilot)
        series = data(app, "aborts")
        assert len(series) == WINDOW_S
        assert series[-5:] == [2.0, 0.0, 0.0, 1.0, 0.0]  # seconds T0+5 .. T0+9
        assert sum(series) == 3
        assert row(app, "aborts").value_text == "0.6"  # 3 aborts in the last 5 s
        assert row(app, "aborts").note_text == "max 2/s"
        assert row(app, "aborts").has_class("-bad")

        panel.now = T0 + 11.0  # T0+10 has finished: its abort is shown
        await settled(pilot)
        assert data(app, "aborts")[-6:] == [2.0, 0.0, 0.0, 1.0, 0.0, 1.0]


async def test_the_window_moves_with_now_and_forgets_what_falls_out_of_it():
    app = GraphsApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(GraphsPanel)
        panel.now = T0
        panel.record_txn(payment(1), T0 - 1.5)
        await settled(pilot)
        assert data(app, "aborts")[-2] == 1.0

        panel.now = T0 + WINDOW_S - 2  # second T0-2 is now the oldest shown
        await settled(pilot)
        assert data(app, "aborts")[0] == 1.0

        panel.now = T0 + WINDOW_S + 5
        await settled(pilot)
        assert data(app, "aborts") == [0.0] * WINDOW_S
        assert row(app, "aborts").value_text == "0.0"
        assert not row(app, "aborts").has_class("-bad")
        assert panel._aborts == {}  # forgotten, not just hidden


# ------------------------------------------------------------------- latency --
async def test_p50_and_p99_are_held_from_each_stats_message_until_the_next():
    app = GraphsApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(GraphsPanel)
        panel.record_stats(StatsChanged((), None, None), T0 - 10)  # nothing decided yet
        panel.record_stats(StatsChanged((1,), 10.0, 40.0), T0 + 1.2)
        panel.record_stats(StatsChanged((1, 2), 30.0, 90.0), T0 + 3.2)
        panel.now = T0 + 5.5  # finished seconds end at T0+4
        await settled(pilot)
        assert data(app, "p50")[-5:] == [0.0, 10.0, 10.0, 30.0, 30.0]  # T0+0 .. T0+4
        assert data(app, "p99")[-5:] == [0.0, 40.0, 40.0, 90.0, 90.0]
        assert row(app, "p50").value_text == "30 ms"
        assert row(app, "p99").value_text == "90 ms"
        assert row(app, "p99").note_text == "max 90 ms"


async def test_latency_says_dash_before_any_payment_is_decided():
    app = GraphsApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(GraphsPanel)
        panel.now = T0
        panel.record_stats(StatsChanged((0, 0), None, None), T0)
        await settled(pilot)
        assert row(app, "p50").value_text == "-"
        assert row(app, "p50").note_text == ""
        assert data(app, "p50") == [0.0] * WINDOW_S


# --------------------------------------------------------------------- banks --
async def test_each_bank_has_its_total_over_time_and_holds_it_while_unreachable():
    app = GraphsApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(GraphsPanel)
        panel.record_balances(balances(171_750, 100_000), T0 + 0.5)
        panel.record_balances(balances(170_500, 101_250), T0 + 2.5)  # a payment of 12.50
        panel.record_balances(balances(170_500, 0, b_reachable=False), T0 + 3.5)  # BankB killed
        panel.now = T0 + 5.0  # finished seconds end at T0+4
        await settled(pilot)

        a, b = data(app, "BankA"), data(app, "BankB")
        assert len(a) == len(b) == WINDOW_S
        # Before the first total, that total; then the total at the end of each second.
        assert a[-5:] == [171_750, 171_750, 170_500, 170_500, 170_500]
        assert a[0] == 171_750
        assert b[-5:] == [100_000, 100_000, 101_250, 101_250, 101_250]  # unreachable: held
        assert row(app, "BankA").value_text == "1,705.00"
        assert row(app, "BankA").note_text == "-12.50 in 60 s"
        assert row(app, "BankB").value_text == "unreachable"
        assert row(app, "BankB").has_class("-bad")
        assert not row(app, "BankA").has_class("-bad")

        panel.record_balances(balances(170_500, 101_250), T0 + 5.2)  # back
        await settled(pilot)
        assert row(app, "BankB").value_text == "1,012.50"
        assert not row(app, "BankB").has_class("-bad")


async def test_a_bank_never_reachable_has_an_empty_graph():
    app = GraphsApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(GraphsPanel)
        panel.now = T0
        panel.record_balances(balances(171_750, 0, b_reachable=False), T0 - 3)
        await settled(pilot)
        assert data(app, "BankB") == []
        assert row(app, "BankB").value_text == "unreachable"
        assert row(app, "BankB").note_text == ""


async def test_balances_recorded_before_the_panel_is_mounted_are_shown():
    panel = GraphsPanel()
    panel.record_balances(balances(171_750, 100_000), T0 - 2)

    class Early(GraphsApp):
        def compose(self) -> ComposeResult:
            yield panel

    app = Early()
    async with app.run_test(size=SIZE) as pilot:
        panel.now = T0
        await settled(pilot)
        assert row(app, "BankA").value_text == "1,717.50"
        assert data(app, "BankA") == [171_750] * WINDOW_S


# ------------------------------------------------------------------- bounded --
async def test_every_history_is_bounded():
    app = GraphsApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(GraphsPanel)
        # Ten times more of everything than a history keeps, all at one moment (nothing
        # falls out of the window by time): only the bounds stop the growth.
        for i in range(10 * MAX_SAMPLES):
            panel.record_stats(StatsChanged((1,), 10.0, 20.0), T0)
            panel.record_balances(balances(171_750 - i, 100_000 + i), T0)
        for n in range(10 * MAX_ABORTED_IDS):
            panel.record_txn(payment(n), T0 + n)  # far ahead of now: still bounded
        many_banks = Balances(tuple(BankBalances(f"Bank{i:02d}", True, (), 100) for i in range(3 * MAX_BANKS)), 0)
        panel.record_balances(many_banks, T0)
        await settled(pilot)

        assert len(panel._p50_ms) == len(panel._p99_ms) == MAX_SAMPLES
        assert all(len(h) <= MAX_SAMPLES for h in panel._balances_cents.values())
        assert len(panel._aborted_ids) == MAX_ABORTED_IDS
        assert len(panel._aborts) <= 2 * WINDOW_S
        assert len(panel._balances_cents) == MAX_BANKS
        assert len(app.query(GraphRow).filter(".bank")) == MAX_BANKS

        # As time passes, samples older than the window go (one kept: its value holds on).
        panel.now = T0 + 10 * WINDOW_S
        await settled(pilot)
        assert len(panel._p50_ms) == 1
        assert all(len(h) == 1 for h in panel._balances_cents.values())


async def test_a_sample_stamped_before_the_last_counts_as_at_the_same_time():
    app = GraphsApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(GraphsPanel)
        panel.record_stats(StatsChanged((), 10.0, 20.0), T0 + 3.5)
        panel.record_stats(StatsChanged((), 50.0, 60.0), T0 + 1.5)  # the clock went back
        panel.now = T0 + 5
        await settled(pilot)
        assert data(app, "p50")[-5:] == [0.0, 0.0, 0.0, 50.0, 50.0]


# -------------------------------------------------------------------- layout --
async def test_graphs_use_the_height_there_is_and_are_one_line_when_two_do_not_fit():
    app = GraphsApp()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(GraphsPanel)
        panel.record_balances(balances(171_750, 100_000), T0)
        await settled(pilot)
        assert all(r.has_class("-tall") for r in app.query(GraphRow))
        assert row(app, "payments").sparkline.size.height == 2

        await pilot.resize_terminal(120, 50)  # a projector: taller graphs, up to MAX_ROW_LINES
        await settled(pilot)
        heights = {r.sparkline.size.height for r in app.query(GraphRow)}
        assert heights == {MAX_ROW_LINES}, heights
        assert sum(r.size.height for r in app.query(GraphRow)) < panel.content_size.height

        await pilot.resize_terminal(120, 10)
        await settled(pilot)
        assert not any(r.has_class("-tall") for r in app.query(GraphRow))
        assert row(app, "payments").sparkline.size.height == 1


# ------------------------------------------------------------------ snapshot --
def feed_a_minute(panel: GraphsPanel) -> None:
    """A fixed minute and a bit: steady traffic, BankB killed at +50 s (aborts, throughput
    drops, its total held), the last second before now."""
    rates: list[int] = []
    for s in range(66):
        t = T0 + s
        panel.now = t
        down = s >= 50
        rates.append((2 if down else 8) + (s * 7) % 5)
        panel.record_stats(StatsChanged(tuple(rates[-WINDOW_S:]), 11.0 + s % 4, 38.0 + (s * 3) % 11), t + 0.3)
        if down and s % 2 == 0:
            panel.record_txn(payment(s), t + 0.6)
        moved = 1_250 * min(s, 50)
        panel.record_balances(balances(171_750 - moved, 100_000 + moved, b_reachable=not down), t + 0.5)
    panel.now = T0 + 66.1


def test_snapshot_graphs_from_a_fixed_feed(snap_compare):
    async def feed(pilot: Pilot) -> None:
        feed_a_minute(pilot.app.query_one(GraphsPanel))
        await settled(pilot)

    assert snap_compare(GraphsApp(), terminal_size=SIZE, run_before=feed)
