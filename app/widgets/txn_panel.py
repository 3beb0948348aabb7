"""2PC live: one row per recent payment, each participant's phase as it happens."""

from __future__ import annotations

from collections import OrderedDict

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from app.format import short_id
from app.model import BankStep, TxnRow
from backend.common.money import format_cents
from backend.common.states import Decision

MAX_ROWS = 200
COMPACT_BELOW_COLUMNS = 110  # narrower than this, a phase is shown by its mark alone
SUBTITLE = "beside each account, its bank's phase: prepare → vote → commit/abort"
COMPACT_SUBTITLE = "phases: … prepare sent  ✓ yes/committed  ✗ no/aborted  ? in doubt"

STEP_STYLE = {  # mark, style; the label is the step's name
    BankStep.PREPARE_SENT: ("…", "yellow"),
    BankStep.VOTED_YES: ("✓", "cyan"),
    BankStep.VOTED_NO: ("✗", "red"),
    BankStep.NO_ANSWER: ("✗", "bold red"),
    BankStep.IN_DOUBT: ("?", "bold black on yellow"),
    BankStep.COMMITTED: ("✓", "green"),
    BankStep.ABORTED: ("✗", "red"),
}


COLUMNS = (
    ("Txn", "txn"),
    ("From", "payer"),
    ("To", "payee"),
    (Text("Amount", justify="right"), "amount"),
    (Text("ms", justify="right"), "latency"),
    ("Decision", "outcome"),
)


class TxnPanel(Vertical):
    """Newest payment at the bottom; in-doubt rows in yellow until a bank resolves them."""

    compact: reactive[bool] = reactive(False, init=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "2PC live: payments through two-phase commit"
        self.border_subtitle = SUBTITLE
        self._rows: OrderedDict[str, TxnRow] = OrderedDict()

    def compose(self) -> ComposeResult:
        yield Static(
            "No payments yet. Pay from the Client tab (c) and watch it go through both banks.", classes="empty-hint"
        )
        yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        table.display = False

    def on_resize(self) -> None:
        self.compact = self.size.width < COMPACT_BELOW_COLUMNS

    def watch_compact(self, compact: bool) -> None:
        self.border_subtitle = COMPACT_SUBTITLE if compact else SUBTITLE
        table = self.query_one(DataTable)
        table.clear(columns=True)  # fresh columns: their widths fit the new cells
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        for row in self._rows.values():
            table.add_row(*_cells(row, compact), key=row.txn_id)

    def upsert(self, row: TxnRow) -> None:
        self._rows[row.txn_id] = row
        table = self.query_one(DataTable)
        cells = _cells(row, self.compact)
        if row.txn_id in table.rows:
            for (_, key), value in zip(COLUMNS, cells, strict=True):
                table.update_cell(row.txn_id, key, value, update_width=True)
            return
        follow = table.cursor_row >= table.row_count - 1
        table.add_row(*cells, key=row.txn_id)
        while len(self._rows) > MAX_ROWS:
            oldest, _ = self._rows.popitem(last=False)
            table.remove_row(oldest)
        table.display = True
        self.query_one(".empty-hint").display = False
        if follow:
            table.move_cursor(row=table.row_count - 1, animate=False)


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


def _side(account: str, step: BankStep | None, style: str, compact: bool) -> Text:
    """'BankA/A-1001 ✓ committed' (or '... ✓' when compact): the account and where its bank
    is in the protocol; no step for the payee of a payment inside one bank."""
    if step is None:
        return Text.assemble((account, style), " ", ("(same bank)", "dim"))
    mark, step_style = STEP_STYLE[step]
    label = step.upper() if step == BankStep.IN_DOUBT else step
    return Text.assemble((account, style), " ", (mark if compact else f"{mark} {label}", step_style))


def _outcome(row: TxnRow) -> Text:
    if row.in_doubt:
        decided = row.decision != Decision.PREPARING
        detail = f" {row.decision} not acknowledged yet" if decided else " asking the gateway"
        return Text.assemble(("⚠ IN DOUBT", "bold black on yellow"), (detail, "bold yellow"))
    if row.decision == Decision.PREPARING:
        return Text("voting…", style="yellow")
    if row.decision == Decision.COMMIT:
        return Text(Decision.COMMIT.value, style="bold green")
    return Text.assemble((Decision.ABORT.value, "bold red"), (f" {row.reason}" if row.reason else "", "red"))
