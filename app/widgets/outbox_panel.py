"""Offline queue: the embedded client's outbox, payments written down but not yet answered.

Every column is as wide as its widest cell, computed here (no frame with columns cut to
their header while the table measures itself); "Why queued" takes the rest and wraps.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from app.format import retry_due, send_failure, short_id
from app.model import QueuedPayment
from backend.common.money import format_cents

COLUMNS = ("Key", "User", "Pay to", "Amount", "Tries", "Next retry", "Why queued")
RIGHT = {"Amount", "Tries"}
MIN_WHY_WIDTH = 12
MAX_ROW_LINES = 2


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
        self._render_rows()

    def on_resize(self) -> None:
        self._render_rows()

    def watch_entries(self) -> None:
        self._render_rows()

    def watch_now(self) -> None:
        self._render_rows()

    def _render_rows(self) -> None:
        table = self.query_one(DataTable)
        rows = [_cells(e, self.now) for e in self.entries]
        widths = _widths(rows, self.size.width - table.styles.scrollbar_size_vertical, table.cell_padding)
        if widths != [c.width for c in table.ordered_columns]:
            table.clear(columns=True)
            for label, width in zip(COLUMNS, widths, strict=True):
                table.add_column(Text(label, justify="right") if label in RIGHT else label, key=label, width=width)
        else:
            table.clear()
        console = self.app.console
        for e, cells in zip(self.entries, rows, strict=True):
            lines = len(cells[-1].wrap(console, widths[-1]))
            table.add_row(*cells, key=e.idempotency_key, height=min(MAX_ROW_LINES, lines))
        self.border_title = f"Offline queue ({len(self.entries)})" if self.entries else "Offline queue"
        table.display = bool(self.entries)
        self.set_class(not self.entries, "-empty")
        self.query_one(".empty-hint").display = not self.entries

    def action_sync(self) -> None:
        self.post_message(self.SyncRequested())


def _cells(e: QueuedPayment, now: float) -> tuple[Text, ...]:
    return (
        Text(short_id(e.idempotency_key, 8), style="dim"),
        Text(e.username),
        Text(e.payee),
        Text(format_cents(e.amount_cents), justify="right"),
        Text(str(e.attempts), justify="right"),
        Text(retry_due(e.next_retry_at, now)),
        Text(_why(e), style="red"),
    )


def _why(e: QueuedPayment) -> str:
    """Why its last send failed, from the status code; never the transport's raw text."""
    if e.last_code:
        return send_failure(e.last_code)
    return "send failed" if e.last_error else "-"


def _widths(rows: list[tuple[Text, ...]], total: int, padding: int) -> list[int]:
    """Each column as wide as its widest cell or label; the last takes what is left."""
    widths = [max([len(label), *(cells[i].cell_len for cells in rows)]) for i, label in enumerate(COLUMNS[:-1])]
    used = sum(w + 2 * padding for w in widths)
    return [*widths, max(MIN_WHY_WIDTH, total - used - 2 * padding)]
