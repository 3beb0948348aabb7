"""Balances: every account at every bank, each bank's total, and whether money is conserved."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from app.model import Balances, BankBalances
from backend.common.money import format_cents


class BalancesPanel(Vertical):
    balances: reactive[Balances | None] = reactive(None, init=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Balances"
        self.border_subtitle = "available = balance − held in 2PC"

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="none", zebra_stripes=False)
        yield Static("waiting for the banks…", id="conservation")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(
            "Bank", "Account", "Owner", Text("Balance", justify="right"), Text("Available", justify="right")
        )

    def watch_balances(self, balances: Balances) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for bank in balances.banks:
            for cells in _bank_rows(bank):
                table.add_row(*cells)
        line = self.query_one("#conservation", Static)
        line.update(_conservation(balances))
        line.set_class(not balances.conserved, "-broken")
        self.set_class(not balances.conserved, "-broken")
        line.set_class(not balances.complete, "-incomplete")


def _bank_rows(bank: BankBalances) -> list[tuple]:
    """A bank's total row, then its accounts. What the total row says beyond the total (held
    by payments in 2PC, or unreachable) sits in the Available column, which is empty there
    otherwise: the Owner column stays as narrow as the names, so nothing is cut."""
    if not bank.reachable:
        return [(Text(bank.bank, style="bold"), Text("?", style="dim"), "", "", Text("unreachable", style="bold red"))]
    rows: list[tuple] = [
        (
            Text(bank.bank, style="bold"),
            Text("total", style="bold"),
            "",
            Text(format_cents(bank.total_cents), style="bold", justify="right"),
            Text(f"held {format_cents(bank.held_cents)}", style="yellow") if bank.held_cents else "",
        )
    ]
    for a in bank.accounts:
        rows.append(("", Text(a.account_id), Text(a.owner), _money(a.balance_cents), _money(a.available_cents)))
    return rows


def _money(cents: int) -> Text:
    return Text(format_cents(cents), justify="right", style="red" if cents < 0 else "")


def _conservation(b: Balances) -> str:
    total, expected = format_cents(b.total_cents), format_cents(b.expected_total_cents)
    if not b.complete:
        missing = ", ".join(x.bank for x in b.banks if not x.reachable)
        return f"? {missing} unreachable: total {total} incomplete"
    if b.settling and b.total_cents != b.expected_total_cents:
        return f"… payments reaching their banks: total {total} for a moment (expected {expected})"
    if b.conserved:
        return f"✓ {total} in all banks: money conserved"
    off = format_cents(b.total_cents - b.expected_total_cents)
    return f"✗ all banks {total} ≠ {expected} expected (off by {off}): MONEY NOT CONSERVED"
