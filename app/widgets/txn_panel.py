"""2PC live: one row per recent payment, each participant's phase as it happens."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from app.format import short_id
from app.model import TxnRow
from backend.common.money import format_cents

MAX_ROWS = 200

PHASE_STYLE = {
    "": ("·", "waiting", "dim"),
    "prepare sent": ("…", "prepare sent", "yellow"),
    "same bank": ("", "(same bank)", "dim"),
    "voted yes": ("✓", "voted yes", "cyan"),
    "voted no": ("✗", "voted no", "red"),
    "no answer": ("✗", "no answer", "bold red"),
    "in doubt": ("?", "IN DOUBT", "bold black on yellow"),
    "committed": ("✓", "committed", "green"),
    "aborted": ("✗", "aborted", "red"),
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

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "2PC live: payments through two-phase commit"
        self.border_subtitle = "beside each account, its bank's phase: prepare → vote → commit/abort"

    def compose(self) -> ComposeResult:
        yield Static("No payments yet. Pay from the Client tab (c) and watch it go through both banks.",
                     classes="empty-hint")
        yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in COLUMNS:
            table.add_column(label, key=key)
        table.display = False

    def upsert(self, row: TxnRow) -> None:
        table = self.query_one(DataTable)
        cells = _cells(row)
        if row.txn_id in table.rows:
            for (_, key), value in zip(COLUMNS, cells):
                table.update_cell(row.txn_id, key, value, update_width=True)
            return
        follow = table.cursor_row >= table.row_count - 1
        table.add_row(*cells, key=row.txn_id)
        while table.row_count > MAX_ROWS:
            table.remove_row(next(iter(table.rows)))
        table.display = True
        self.query_one(".empty-hint").display = False
        if follow:
            table.move_cursor(row=table.row_count - 1, animate=False)


def _cells(row: TxnRow) -> tuple:
    style = "bold yellow" if row.in_doubt else ""
    payer, *rest = row.participants
    return (
        Text(short_id(row.txn_id), style=style or "dim"),
        _side(row.payer, payer.phase, style),
        _side(row.payee, rest[0].phase if rest else "same bank", style),
        Text(format_cents(row.amount_cents), style=style, justify="right"),
        Text("…" if row.latency_ms is None else f"{row.latency_ms:.0f}", justify="right", style="dim"),
        _outcome(row),
    )


def _side(account: str, phase: str, style: str) -> Text:
    """'BankA/A-1001 ✓ committed': the account and where its bank is in the protocol."""
    mark, label, phase_style = PHASE_STYLE.get(phase, ("", phase, "dim"))
    return Text.assemble((account, style), " ", (f"{mark} {label}".strip(), phase_style))


def _outcome(row: TxnRow) -> Text:
    if row.in_doubt:
        detail = f" {row.decision} not acknowledged yet" if row.decision else " asking the gateway"
        return Text.assemble(("⚠ IN DOUBT", "bold black on yellow"), (detail, "bold yellow"))
    if not row.decision:
        return Text("voting…", style="yellow")
    if row.decision == "COMMIT":
        return Text("COMMIT", style="bold green")
    return Text.assemble(("ABORT", "bold red"), (f" {row.reason}" if row.reason else "", "red"))
