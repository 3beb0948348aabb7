"""2PC live: one row per recent payment, each participant's phase as it happens.

The table follows the newest payment (the last row stays in view, whatever the panel's
height does) until the user moves up on purpose; End follows again. Every column has a
width computed here from what it shows, so nothing is cut and no frame is drawn with
half-measured columns: the Decision column takes the rest of the width and a long
reason wraps onto a second line.

One row per payment: a retry (a new transaction under the same user and idempotency key)
takes the place of the attempt before it, at the bottom, and says which attempt it is.
Enter (or a click) on a row asks for that payment's story.

With a tier of gateway replicas, a Gw column says which replica ran each payment ("gw-2"),
and which took it over when that replica stopped ("gw-2→gw-1"); with one gateway it is left out.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowKey

from app.format import short_id
from app.model import BankStep, TxnRow
from backend.common.money import format_cents
from backend.common.states import Decision

MAX_ROWS = 200
COMPACT_BELOW_COLUMNS = 110  # narrower than this, a phase is shown by its mark alone
MIN_DECISION_WIDTH = 14  # below this the table scrolls sideways rather than wrap word by word
MAX_ROW_LINES = 3  # a reason longer than this many lines is cut (the Logs tab has it whole)
TITLE = "2PC live: payments through two-phase commit"
SUBTITLE = "beside each account, its bank's phase: prepare → vote → commit/abort"
COMPACT_SUBTITLE = "phases: … prepare sent  ✓ yes/committed  ✗ no/aborted  ? in doubt"
PAUSED_SUBTITLE = "following paused: End jumps to the newest"

STEP_STYLE = {  # mark, style; the label is the step's name
    BankStep.PREPARE_SENT: ("…", "yellow"),
    BankStep.VOTED_YES: ("✓", "cyan"),
    BankStep.VOTED_NO: ("✗", "red"),
    BankStep.NO_ANSWER: ("✗", "bold red"),
    BankStep.IN_DOUBT: ("?", "bold black on yellow"),
    BankStep.COMMITTED: ("✓", "green"),
    BankStep.ABORTED: ("✗", "red"),
}


COLUMNS: tuple[tuple[str | Text, str], ...] = (
    ("Txn", "txn"),
    ("From", "payer"),
    ("To", "payee"),
    (Text("Amount", justify="right"), "amount"),
    (Text("ms", justify="right"), "latency"),
    ("Decision", "outcome"),
)
WRAPPED = "outcome"  # the one column that takes the width left and wraps
REPLICA_COLUMN: tuple[str | Text, str] = ("Gw", "replica")  # after Txn, while payments run on replicas
SINGLE_GATEWAY = ("", "gateway")  # what a payment's replica is without a tier
REPLICA_PREFIX = "gw-"  # of the replicas' names (backend.supervisor), left out under COMPACT_BELOW_COLUMNS
REPLICA_STYLE = "#5fafff"  # the gateway's colour in the Logs tab


class TxnTable(DataTable):
    """The rows. `following` is True while the newest row is to be kept in view; only the
    user changes it: moving up (keys, click, wheel) stops it, End or reaching the last
    row again starts it."""

    BINDINGS = [
        Binding(
            "enter", "select_cursor", "Story", tooltip="The payment's story: each phase, who said what, its log lines"
        ),
        Binding("L", "logs", "Its logs", tooltip="The Logs tab, showing only this payment's lines (esc: all lines)"),
        Binding("end", "follow", "Newest"),
        Binding("home", "oldest", "Oldest", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.following = True

    def show_newest(self) -> None:
        """Cursor on the last row, scrolled to the bottom (after the next layout)."""
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)
            self.call_after_refresh(self._scroll_bottom)

    def _scroll_bottom(self) -> None:
        if self.following:
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True)

    def _user_moved(self) -> None:
        self.following = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        self.post_message(TxnPanel.FollowChanged())

    def action_follow(self) -> None:
        self.following = True
        self.show_newest()
        self.post_message(TxnPanel.FollowChanged())

    def action_logs(self) -> None:
        if self.row_count:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
            self.post_message(TxnPanel.LogsRequested(str(key.value)))

    def action_oldest(self) -> None:
        self.action_scroll_top()
        self._user_moved()

    def action_cursor_up(self) -> None:
        super().action_cursor_up()
        self._user_moved()

    def action_cursor_down(self) -> None:
        super().action_cursor_down()
        self._user_moved()

    def action_page_up(self) -> None:
        super().action_page_up()
        self._user_moved()

    def action_page_down(self) -> None:
        super().action_page_down()
        self._user_moved()

    def action_scroll_top(self) -> None:
        super().action_scroll_top()
        self._user_moved()

    def action_scroll_bottom(self) -> None:
        super().action_scroll_bottom()
        self._user_moved()

    async def on_click(self, event: events.Click) -> None:
        self.call_after_refresh(self._user_moved)  # the base class moves the cursor first

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.following = False
        self.post_message(TxnPanel.FollowChanged())

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        def at_bottom() -> None:
            if self.is_vertical_scroll_end:
                self.following = True
                self.show_newest()
                self.post_message(TxnPanel.FollowChanged())

        self.call_after_refresh(at_bottom)

    def on_resize(self) -> None:
        if self.following:
            self.show_newest()


class TxnPanel(Vertical):
    """Newest payment at the bottom; in-doubt rows in yellow until a bank resolves them."""

    compact: reactive[bool] = reactive(False, init=False)

    class FollowChanged(Message):
        """The table started or stopped following the newest row."""

    @dataclass
    class LogsRequested(Message):
        """L on a row: show this transaction's log lines (and its other attempts')."""

        txn_id: str

    @dataclass
    class StoryRequested(Message):
        """Enter or a click on a row: show the story of this transaction."""

        txn_id: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = TITLE
        self.border_subtitle = SUBTITLE
        self._rows: OrderedDict[str, TxnRow] = OrderedDict()  # txn id -> row, the table's order
        self._shown: dict[str, str] = {}  # TxnRow.payment -> the txn id of its attempt in the table
        self._widths: dict[str, int] = {}  # column key -> width in cells, as the table has it
        self._columns = COLUMNS  # with REPLICA_COLUMN once a payment ran on a replica of a tier
        self._laid_out_for = -1  # the panel width the columns were computed for

    def compose(self) -> ComposeResult:
        yield Static(
            "No payments yet. Press p to pay (or use the Client tab) and watch it go through both banks.",
            classes="empty-hint",
        )
        yield TxnTable()

    @property
    def table(self) -> TxnTable:
        return self.query_one(TxnTable)

    @property
    def following(self) -> bool:
        return self.table.following

    def on_mount(self) -> None:
        self._rebuild()
        self.table.display = False

    def on_resize(self) -> None:
        self.compact = self.size.width < COMPACT_BELOW_COLUMNS
        if self.size.width != self._laid_out_for:
            self._rebuild()

    def watch_compact(self) -> None:
        self._rebuild()

    def on_txn_panel_follow_changed(self) -> None:
        self._show_titles()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.StoryRequested(event.row_key.value))

    # ------------------------------------------------------------ rows --
    def upsert(self, row: TxnRow) -> None:
        table = self.table
        shown = self._shown.get(row.payment)
        if shown is not None and shown != row.txn_id:
            if row.attempt < self._rows[shown].attempt:
                return  # a late line of an earlier attempt: the row shows the newest (its story has all)
            self._forget(shown)  # a retry: it takes the earlier attempt's place, at the bottom
        self._shown[row.payment] = row.txn_id
        known = row.txn_id in self._rows
        self._rows[row.txn_id] = row
        if row.replica not in SINGLE_GATEWAY and self._columns == COLUMNS:
            self._columns = _with_replica(COLUMNS)
        cells = self._cells(row)
        if self._needs_wider_columns(cells):
            self._rebuild()
        elif known:
            self._update(row.txn_id, cells)
        else:
            table.add_row(*cells, key=row.txn_id, height=self._height(cells))
        while len(self._rows) > MAX_ROWS:
            self._forget(next(iter(self._rows)))
        # Whichever way the row went in: the first payment of a fresh control room comes with
        # cells wider than the headers, so it goes in by a rebuild (it stayed hidden behind the
        # "No payments yet" hint until a second payment).
        table.display = True
        self.query_one(".empty-hint").display = False
        if table.following:
            table.show_newest()
        self._show_titles()

    def _forget(self, txn_id: str) -> None:
        row = self._rows.pop(txn_id)
        if self._shown.get(row.payment) == txn_id:
            del self._shown[row.payment]
        self.table.remove_row(txn_id)

    def _update(self, txn_id: str, cells: tuple) -> None:
        table = self.table
        if table.rows[RowKey(txn_id)].height == self._height(cells):
            for (_, key), value in zip(self._columns, cells, strict=True):
                table.update_cell(txn_id, key, value)
            return
        # A row's height changes only by adding it again: add it and every later row anew.
        index = table.get_row_index(txn_id)
        later = list(self._rows)[index:]
        cursor_key = self._cursor_key()
        for key in later:
            table.remove_row(key)
        for key in later:
            again = self._cells(self._rows[key])
            table.add_row(*again, key=key, height=self._height(again))
        self._restore_cursor(cursor_key)

    def _cursor_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def _restore_cursor(self, key: str | None, scroll: bool = False) -> None:
        """The cursor back on the row the user chose (and, with `scroll`, that row in view)."""
        table = self.table
        if table.following or key is None or key not in table.rows:
            return
        table.move_cursor(row=table.get_row_index(key), animate=False, scroll=scroll)

    # ---------------------------------------------------------- layout --
    def _rebuild(self) -> None:
        """Columns sized for the rows and the panel's width, every row added again; the
        cursor stays on its row (or on the newest while following), never jumps to the top."""
        if not self.is_mounted:
            return
        table = self.table
        cursor_key = self._cursor_key()
        every = [self._cells(r) for r in self._rows.values()]
        total = self.size.width - table.styles.scrollbar_size_vertical
        self._widths = _widths(every, total, table.cell_padding, self._columns)
        self._laid_out_for = self.size.width
        table.clear(columns=True)
        for label, key in self._columns:
            table.add_column(label, key=key, width=self._widths[key])
        for txn_id, cells in zip(self._rows, every, strict=True):
            table.add_row(*cells, key=txn_id, height=self._height(cells))
        if table.following:
            table.show_newest()
        else:
            self._restore_cursor(cursor_key, scroll=True)
        self._show_titles()

    def _needs_wider_columns(self, cells: tuple) -> bool:
        return any(
            key != WRAPPED and _width(value) > self._widths.get(key, 0)
            for (_, key), value in zip(self._columns, cells, strict=True)
        )

    def _cells(self, row: TxnRow) -> tuple:
        cells = _cells(row, self.compact)
        if self._columns == COLUMNS:
            return cells
        return (cells[0], _replica(row, self.compact), *cells[1:])

    def _height(self, cells: tuple) -> int:
        """Lines the Decision cell wraps onto at its column's width."""
        outcome: Text = cells[-1]
        width = self._widths.get(WRAPPED, 0)
        if width <= 0 or outcome.cell_len <= width:
            return 1
        return min(MAX_ROW_LINES, len(outcome.wrap(self.app.console, width)))

    def _show_titles(self) -> None:
        doubt = sum(1 for r in self._rows.values() if r.in_doubt)
        self.border_title = f"{TITLE} · ⚠ {doubt} IN DOUBT" if doubt else TITLE
        if not self.table.following and self._rows:
            self.border_subtitle = PAUSED_SUBTITLE
        else:
            self.border_subtitle = COMPACT_SUBTITLE if self.compact else SUBTITLE


def _width(value: object) -> int:
    return value.cell_len if isinstance(value, Text) else len(str(value))


def _with_replica(columns: tuple[tuple[str | Text, str], ...]) -> tuple[tuple[str | Text, str], ...]:
    return (columns[0], REPLICA_COLUMN, *columns[1:])


def _widths(rows: list[tuple], total: int, padding: int, columns=COLUMNS) -> dict[str, int]:
    """Every column as wide as its widest cell (or label); Decision gets what is left."""
    widths = {
        key: max([_width(label), *(_width(cells[i]) for cells in rows)])
        for i, (label, key) in enumerate(columns)
        if key != WRAPPED
    }
    used = sum(w + 2 * padding for w in widths.values())
    widths[WRAPPED] = max(MIN_DECISION_WIDTH, total - used - 2 * padding)
    return widths


def _cells(row: TxnRow, compact: bool) -> tuple:
    style = "bold yellow" if row.in_doubt else ""
    payer, *rest = row.participants
    return (
        Text(short_id(row.txn_id), style=style or "dim"),
        _side(row.payer, payer.phase, style, compact),
        _side(row.payee, rest[0].phase if rest else None, style, compact),
        Text(format_cents(row.amount_cents), style=style, justify="right"),
        Text("…" if row.latency_ms is None else f"{row.latency_ms:.0f}", justify="right", style="dim"),
        _outcome(row),
    )


def _replica(row: TxnRow, compact: bool) -> Text:
    """Which replica ran the payment: "gw-2", "gw-2→gw-1" when gw-1 took it over; compact, the
    replicas' numbers: "2", "2→1"."""
    ran = row.ran_on
    if compact:
        ran = ran.replace(REPLICA_PREFIX, "")
    return Text(ran, style=REPLICA_STYLE + (" bold" if row.taken_over_by else ""))


def _side(account: str, step: BankStep | None, style: str, compact: bool) -> Text:
    """'BankA/A-1001 ✓ committed' (or '... ✓' when compact): the account and where its bank
    is in the protocol; no step for the payee of a payment inside one bank."""
    if step is None:
        return Text.assemble((account, style), " ", ("(same bank)", "dim"))
    mark, step_style = STEP_STYLE[step]
    label = step.upper() if step == BankStep.IN_DOUBT else step
    return Text.assemble((account, style), " ", (mark if compact else f"{mark} {label}", step_style))


def _outcome(row: TxnRow) -> Text:
    text = _decision(row)
    if row.attempt > 1:  # a retry under the same key: the earlier attempts are in its story
        text.append(f" (attempt {row.attempt})", style="bold")
    return text


def _decision(row: TxnRow) -> Text:
    if row.in_doubt:
        decided = row.decision != Decision.PREPARING
        detail = f" {row.decision} not acknowledged yet" if decided else " asking the gateway"
        return Text.assemble(("⚠ IN DOUBT", "bold black on yellow"), (detail, "bold yellow"))
    if row.decision == Decision.PREPARING:
        return Text("voting…", style="yellow")
    if row.decision == Decision.COMMIT:
        return Text(Decision.COMMIT.value, style="bold green")
    return Text.assemble((Decision.ABORT.value, "bold red"), (f" {row.reason}" if row.reason else "", "red"))
