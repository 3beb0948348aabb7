"""Processes: each server the control room supervises, with its fault toggles."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from app.format import duration
from app.model import ProcessInfo
from backend.common.states import ProcessState

STATE_STYLE = {
    ProcessState.SERVING: "bold green",
    ProcessState.STARTING: "yellow",
    ProcessState.FROZEN: "bold cyan",
    ProcessState.OFFLINE: "bold red",
    ProcessState.CRASHED: "bold white on red",
    ProcessState.STOPPED: "dim",
}
RUNNING = (ProcessState.STARTING, ProcessState.SERVING, ProcessState.FROZEN)
COLUMNS = ("Process", "State", "PID", "Port", "Uptime", "Restarts", "Health")
HEALTH_STYLE = {"SERVING": "green", "NOT_SERVING": "red", "UNKNOWN": "dim"}
LEGEND = (
    "Select a process with ↑↓, then press\n"
    "  [b]k[/b]  kill (SIGKILL): it goes offline\n"
    "  [b]f[/b]  freeze (SIGSTOP): up, but answers nothing;\n"
    "     f again thaws it\n"
    "  [b]r[/b]  restart it\n"
    "A crashed process stays down until you restart it."
)


class ProcessPanel(Vertical):
    BINDINGS = [
        Binding("k", "act('kill')", "Kill"),
        Binding("f", "freeze_or_thaw", "Freeze/thaw"),
        Binding("r", "act('restart')", "Restart"),
    ]

    processes: reactive[tuple[ProcessInfo, ...]] = reactive(tuple, init=False)
    now: reactive[float] = reactive(0.0, init=False)

    @dataclass
    class ActionRequested(Message):
        """The user asked to kill/freeze/thaw/restart `process`."""

        action: str
        process: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Processes"
        self.border_subtitle = "health: gRPC health service"

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row")
        yield Static(LEGEND, classes="legend")

    def watch_processes(self) -> None:
        self._render_rows()

    def watch_now(self) -> None:
        self._render_rows()

    def _render_rows(self) -> None:
        """Cells updated in place under columns as wide as their widest cell, computed here:
        the table never draws a frame with columns cut to their header's width while it
        measures itself (which a rebuild of the columns on every tick did)."""
        table = self.query_one(DataTable)
        rows = {p.name: _cells(p, self.now) for p in self.processes}
        widths = [max([len(label), *(_width(cells[i]) for cells in rows.values())]) for i, label in enumerate(COLUMNS)]
        if widths != [c.width for c in table.ordered_columns] or list(rows) != [
            r.key.value for r in table.ordered_rows
        ]:
            row = table.cursor_row
            table.clear(columns=True)
            for label, width in zip(COLUMNS, widths, strict=True):
                table.add_column(label, key=label, width=width)
            for name, cells in rows.items():
                table.add_row(*cells, key=name)
            if rows:
                table.move_cursor(row=min(row, len(rows) - 1), animate=False)
            return
        for name, cells in rows.items():
            for label, value in zip(COLUMNS, cells, strict=True):
                if table.get_cell(name, label) != value:
                    table.update_cell(name, label, value)

    def _selected(self) -> ProcessInfo | None:
        if not self.processes:
            return None
        return self.processes[min(self.query_one(DataTable).cursor_row, len(self.processes) - 1)]

    def action_act(self, action: str) -> None:
        if (p := self._selected()) is not None:
            self.post_message(self.ActionRequested(action, p.name))

    def action_freeze_or_thaw(self) -> None:
        if (p := self._selected()) is not None:
            self.post_message(self.ActionRequested("thaw" if p.state == ProcessState.FROZEN else "freeze", p.name))


def _width(value: object) -> int:
    return value.cell_len if isinstance(value, Text) else len(str(value))


def _cells(p: ProcessInfo, now: float) -> tuple:
    uptime = "-" if p.started_at is None or p.state not in RUNNING else duration(now - p.started_at)
    if p.pid is not None:
        pid = Text(str(p.pid))
    elif p.exit_code is not None:
        pid = Text(f"exit {p.exit_code}", style="red")  # why it is down
    else:
        pid = Text("-")
    return (
        Text(p.name, style="bold"),
        Text(p.state, style=STATE_STYLE.get(p.state, "")),
        pid,
        str(p.port),
        uptime,
        Text(str(p.restarts), justify="right"),
        Text(p.health.lower().replace("_", " "), style=HEALTH_STYLE.get(p.health, "")),
    )
