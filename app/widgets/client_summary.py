"""The logged-in user's accounts and recent payments."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from app.format import relative
from app.model import ClientState
from backend.common.money import format_cents
from backend.common.states import PaymentStatus

STATUS_STYLE = {PaymentStatus.SUCCEEDED: "green", PaymentStatus.DECLINED: "red", PaymentStatus.PENDING: "yellow"}


class ClientSummary(Vertical):
    state: reactive[ClientState] = reactive(ClientState(None), init=False)
    now: reactive[float] = reactive(0.0, init=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Your accounts and payments"

    def compose(self) -> ComposeResult:
        yield Static(
            "Log in to see your balance and history. Demo users are in fixtures/users.json.", classes="empty-hint"
        )
        yield DataTable(cursor_type="none", id="client-accounts")
        yield DataTable(cursor_type="row", id="client-history")

    def on_mount(self) -> None:
        accounts = self.query_one("#client-accounts", DataTable)
        accounts.add_columns("Account", Text("Balance", justify="right"), Text("Available", justify="right"))
        history = self.query_one("#client-history", DataTable)
        history.add_columns("When", "", "With", Text("Amount", justify="right"), "Status", "Reason")
        accounts.display = history.display = False

    def watch_state(self) -> None:
        self._render_rows()

    def watch_now(self) -> None:
        self._render_rows()

    def _render_rows(self) -> None:
        logged_in = self.state.username is not None
        self.query_one(".empty-hint").display = not logged_in
        accounts = self.query_one("#client-accounts", DataTable)
        history = self.query_one("#client-history", DataTable)
        accounts.display = history.display = logged_in
        accounts.clear()
        for a in self.state.accounts:
            accounts.add_row(f"{a.bank}/{a.account_id}", _money(a.balance_cents), _money(a.available_cents))
        history.clear()
        for p in self.state.history:
            sign = "-" if p.direction == "sent" else "+"
            history.add_row(
                relative(p.created_at, self.now),
                "to" if p.direction == "sent" else "from",
                p.counterparty,
                _money(p.amount_cents, sign),
                Text(p.status.lower(), style=STATUS_STYLE.get(p.status, "")),
                p.reason,
            )


def _money(cents: int, sign: str = "") -> Text:
    return Text(sign + format_cents(cents), justify="right")
