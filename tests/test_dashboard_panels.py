"""The dashboard's panels driven with Pilot over the fixed SnapshotSource: the 2PC table keeps
the newest payment in view, nothing a presenter needs is cut, the Processes table never
draws half-measured columns, the offline queue speaks plainly. No processes, no real clock.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from rich.text import Text
from textual.widgets import DataTable

from app import messages as msg
from app.app import StrifeApp
from app.model import BankStep, Participant, ProcessInfo, QueuedPayment, TxnRow
from app.widgets.outbox_panel import OutboxPanel
from app.widgets.process_panel import ProcessPanel
from app.widgets.txn_panel import TxnPanel
from backend.common.states import Decision, ProcessState
from tests.snapshot_source import NOW
from tests.test_snapshots import make_app, settle

pytestmark = pytest.mark.usefixtures("fixed_environment")  # TZ=UTC, no host colours (tests/conftest.py)

WIDE = (120, 40)
SMALL = (80, 24)
MANY = 30  # more payments than the 2PC panel shows at once at any size


def payment(n: int, *, in_doubt: bool = False, reason: str = "") -> TxnRow:
    """Payment number `n`, committed (or aborted with `reason`, or in doubt at the payee)."""
    decision = Decision.ABORT if reason else Decision.COMMIT
    done = BankStep.ABORTED if reason else BankStep.COMMITTED
    return TxnRow(
        txn_id=f"{n:06d}abcdef",
        payer="BankA/A-1001",
        payee="BankB/B-2001",
        amount_cents=100 * n,
        participants=(Participant("BankA", done), Participant("BankB", BankStep.IN_DOUBT if in_doubt else done)),
        decision=decision,
        reason=reason,
        started_at=NOW + n,
        latency_ms=None if in_doubt else 13.0,
    )


async def add_payments(pilot, rows) -> None:
    for row in rows:
        pilot.app.post_message(msg.TxnChanged(row))
    await pilot.pause()
    await pilot.pause()


def txn_table(app: StrifeApp) -> DataTable:
    return app.query_one(TxnPanel).query_one(DataTable)


def visible_rows(table: DataTable) -> list[str]:
    """Keys of the rows wholly inside the table's viewport now."""
    top = round(table.scroll_y)
    bottom = top + table.scrollable_content_region.height - (table.header_height if table.show_header else 0)
    keys, y = [], 0
    for row in table.ordered_rows:
        if y >= top and y + row.height <= bottom:
            keys.append(row.key.value)
        y += row.height
    return keys


def newest_in_view(app: StrifeApp) -> bool:
    table = txn_table(app)
    last = table.ordered_rows[-1].key.value
    return last in visible_rows(table) and table.cursor_row == table.row_count - 1


def cut_cells(table: DataTable) -> list[str]:
    """Cells (as text) that do not fit the lines their row has at their column's width, and
    anything past the right edge of the viewport."""
    console = table.app.console
    cut = []
    for row in table.ordered_rows:
        for column in table.ordered_columns:
            value = table.get_cell(row.key, column.key)
            text = value if isinstance(value, Text) else Text(str(value))
            width = column.get_render_width(table) - 2 * table.cell_padding
            if len(text.wrap(console, width)) > row.height or text.cell_len > width and row.height == 1:
                cut.append(text.plain)
    if table.max_scroll_x > 0:
        cut.append(f"{table.max_scroll_x} columns past the right edge")
    return cut


# ----------------------------------------------------------------- bug 1 --
async def test_the_2pc_table_keeps_the_newest_payment_in_view_across_width_changes():
    async with make_app("idle").run_test(size=WIDE) as pilot:
        await settle(pilot)
        app = pilot.app
        await add_payments(pilot, [payment(n) for n in range(MANY)])
        assert newest_in_view(app)
        for size in ((100, 40), WIDE, SMALL, (90, 30), WIDE):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            await pilot.pause()
            assert newest_in_view(app), f"newest row out of view after resizing to {size}"
            await add_payments(pilot, [payment(MANY + len(size) * size[0])])
            assert newest_in_view(app), f"a new payment was added out of sight at {size}"


async def test_scrolling_up_stops_following_and_end_jumps_to_the_newest():
    async with make_app("idle").run_test(size=WIDE) as pilot:
        await settle(pilot)
        app = pilot.app
        await add_payments(pilot, [payment(n) for n in range(MANY)])
        table = txn_table(app)
        table.focus()
        await pilot.resize_terminal(*SMALL)  # compact rows, as in tmux at 80 columns
        await pilot.pause()
        await pilot.press("up", "up", "up")
        looking_at = table.cursor_row
        await add_payments(pilot, [payment(MANY + 1)])
        assert table.cursor_row == looking_at, "a new payment pulled the user away from the row they chose"
        await pilot.resize_terminal(*WIDE)  # a width change keeps the row they chose too
        await pilot.pause()
        await pilot.pause()
        assert table.cursor_row == looking_at
        assert table.ordered_rows[looking_at].key.value in visible_rows(table), "the chosen row went out of view"
        await pilot.press("end")
        await pilot.pause()
        assert newest_in_view(app)
        await add_payments(pilot, [payment(MANY + 2)])
        assert newest_in_view(app), "End did not start following again"


# ----------------------------------------------------------------- bug 2 --
async def test_the_offline_queue_growing_never_hides_the_newest_payments_or_one_in_doubt():
    async with make_app("idle").run_test(size=WIDE) as pilot:
        await settle(pilot)
        app = pilot.app
        rows = [payment(n) for n in range(MANY)] + [payment(MANY, in_doubt=True), payment(MANY + 1)]
        await add_payments(pilot, rows)
        assert newest_in_view(app)
        queued = QueuedPayment("0c1d2e3f-4a5b", "alice", "BankB/B-2001", 1_000, 1, NOW + 4, "", NOW)
        app.post_message(msg.OutboxChanged((queued,)))
        await pilot.pause()
        await pilot.pause()
        assert app.query_one(OutboxPanel).entries  # the queue panel grew
        assert newest_in_view(app), "the queue pushed the newest payment below the fold"
        assert rows[-2].txn_id in visible_rows(txn_table(app)), "the in-doubt payment is hidden"
        assert "1 IN DOUBT" in str(app.query_one(TxnPanel).border_title)


# ----------------------------------------------------------------- bug 9 --
async def test_the_processes_table_never_draws_columns_narrower_than_their_cells():
    """A tick (or new process states) must not leave a frame with columns cut to their
    header's width until the table measures itself again."""
    async with make_app("idle").run_test(size=WIDE) as pilot:
        await settle(pilot)
        app = pilot.app
        panel = app.query_one(ProcessPanel)
        table = panel.query_one(DataTable)
        await pilot.press("l")
        panel.now = NOW + 1  # the clock ticks while the Logs tab is open
        assert cut_cells(table) == [], "cut right after a tick"
        await pilot.press("d")
        assert cut_cells(table) == [], "cut right after returning to the Dashboard"
        panel.processes = tuple(replace(p, health="NOT_SERVING") for p in panel.processes)
        assert cut_cells(table) == [], "cut right after new process states"


# ---------------------------------------------------------------- bug 10 --
WORST_PROCESSES = (  # every long value at once
    ProcessInfo("gateway", "gateway", ProcessState.CRASHED, 50050, exit_code=-9, health="UNKNOWN"),
    ProcessInfo("BankA", "bank", ProcessState.FROZEN, 50051, 4102, NOW - 754, 12, "NOT_SERVING"),
    ProcessInfo("BankB", "bank", ProcessState.STARTING, 50052, 4194303, NOW - 1, 3, "NOT_SERVING"),
    ProcessInfo("BankC", "bank", ProcessState.OFFLINE, 50053, exit_code=-15, health="UNKNOWN"),
)


QUEUED = (
    QueuedPayment("0c1d2e3f-4a5b", "alice", "BankB/B-2001", 1_000, 3, NOW + 4, "Socket closed", NOW, "UNAVAILABLE"),
    QueuedPayment(
        "5e6f7081-92a3", "frank", "BankC/C-3001", 1_234_567, 12, NOW - 3, "Deadline Exceeded", NOW, "DEADLINE_EXCEEDED"
    ),
)


@pytest.mark.parametrize("size", [WIDE, SMALL])
async def test_nothing_a_presenter_needs_is_cut(size):
    async with make_app("bank_offline").run_test(size=size) as pilot:
        await settle(pilot)
        app = pilot.app
        await add_payments(
            pilot,
            [
                payment(1, reason="declined: insufficient funds"),
                payment(2, reason="gateway restarted during 2PC"),
                payment(3, reason="BankB timed out; BankC offline"),
                payment(4, in_doubt=True),
            ],
        )
        app.query_one(ProcessPanel).processes = WORST_PROCESSES
        app.post_message(msg.OutboxChanged(QUEUED))
        await pilot.pause()
        await pilot.pause()
        for panel in (TxnPanel, ProcessPanel, OutboxPanel):
            table = app.query_one(panel).query_one(DataTable)
            assert cut_cells(table) == [], f"{panel.__name__} cuts text at {size}"
        decisions = [str(txn_table(app).get_cell_at((i, 5))) for i in range(txn_table(app).row_count)]
        assert all(d.startswith((Decision.COMMIT, Decision.ABORT, "⚠ IN DOUBT")) for d in decisions)


# ---------------------------------------------------------------- bug 12 --
async def test_the_queue_says_a_due_retry_is_due_and_gives_a_human_reason():
    async with make_app("idle").run_test(size=WIDE) as pilot:
        await settle(pilot)
        app = pilot.app
        app.post_message(msg.OutboxChanged(QUEUED))
        await pilot.pause()
        table = app.query_one(OutboxPanel).query_one(DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        text = " | ".join(" ".join(r) for r in rows)
        assert "ago" not in text
        assert rows[1][5] == "due now"
        assert rows[0][5] == "in 4s"
        assert "Socket closed" not in text and "Deadline Exceeded" not in text
        assert rows[0][6] == "gateway or bank down"
        assert rows[1][6] == "no answer in time"
