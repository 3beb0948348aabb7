"""Offline queue: the embedded client's outbox, payments written down but not yet answered."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from app.format import relative, short_id
from app.model import QueuedPayment
from backend.common.money import format_cents


class OutboxPanel(Vertical):
    BINDINGS = [Binding("s", "sync", "Retry queue now")]

    entries: reactive[tuple[QueuedPayment, ...]] = reactive(tuple, init=False)
    now: reactive[float] = reactive(0.0, init=False)

    class SyncRequested(Message):
        """The user asked to retry the queued payments now."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Offline queue"
        self.border_subtitle = "s retry now"

    def compose(self) -> ComposeResult:
        yield Static(
            "Empty. A payment waits here until the gateway gives a final answer; "
            "it is retried with the same idempotency key, so it is never charged twice.",
            classes="empty-hint",
        )
        yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Key", "User", "Pay to", Text("Amount", justify="right"), "Tries", "Next retry", "Last error")
        self._render_rows()

    def watch_entries(self) -> None:
        self._render_rows()

    def watch_now(self) -> None:
        self._render_rows()

    def _render_rows(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for e in self.entries:
            table.add_row(
                Text(short_id(e.idempotency_key, 8), style="dim"),
                e.username,
                e.payee,
                Text(format_cents(e.amount_cents), justify="right"),
                Text(str(e.attempts), justify="right"),
                relative(e.next_retry_at, self.now),
                Text(e.last_error, style="red"),
                key=e.idempotency_key,
            )
        self.border_title = f"Offline queue ({len(self.entries)})" if self.entries else "Offline queue"
        table.display = bool(self.entries)
        self.set_class(not self.entries, "-empty")
        self.query_one(".empty-hint").display = not self.entries

    def action_sync(self) -> None:
        self.post_message(self.SyncRequested())
