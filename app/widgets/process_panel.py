"""Processes: each server the control room supervises, with its fault toggles.

Below the table, Kill / Freeze (Thaw) / Restart buttons act on the selected process and
name it; a mouse or Tab + Enter presses them, k, f and r do the same from the table, and
the number keys (the app's) pick a process by its place in the table.

With a tier of gateway replicas (`tier`), the title names the control room's load-balancing
policy and two columns say, for each replica, its share of the calls over the last seconds
and the calls it is serving now (Restarts makes room for them)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Button, DataTable, Static

from app.format import duration
from app.model import ProcessInfo, Tier
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
# With a tier: each replica's share of the calls and its load, in the room of Restarts (at 120
# columns the panel has 66 cells; Restarts is the column a demo of the tier needs least).
TIER_COLUMNS = ("Process", "State", "Calls", "Load", "PID", "Port", "Uptime", "Health")
TITLE = "Processes"
HEALTH_STYLE = {"SERVING": "green", "NOT_SERVING": "red", "UNKNOWN": "dim"}
LEGEND = "[b]1[/b]–[b]9[/b] pick a process · [b]k[/b] kill · [b]f[/b] freeze/thaw · [b]r[/b] restart"
SUBTITLE = "health: gRPC health service"
DATABASE_KIND = "database"  # its health is a login to it
ACTION_LABEL = {"kill": "Kill", "freeze": "Freeze", "thaw": "Thaw", "restart": "Restart"}


class ProcessPanel(Vertical):
    BINDINGS = [
        Binding("k", "act('kill')", "Kill"),
        Binding("f", "freeze_or_thaw", "Freeze/thaw"),
        Binding("r", "act('restart')", "Restart"),
    ]

    processes: reactive[tuple[ProcessInfo, ...]] = reactive(tuple, init=False)
    now: reactive[float] = reactive(0.0, init=False)
    tier: reactive[Tier | None] = reactive(None, init=False)  # None: one gateway, no tier to show

    @dataclass
    class ActionRequested(Message):
        """The user asked to kill/freeze/thaw/restart `process`."""

        action: str
        process: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = TITLE
        self.border_subtitle = SUBTITLE

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row")
        with Horizontal(id="process-buttons"):
            yield Button("Kill", id="process-kill", variant="error", compact=True)
            yield Button("Freeze", id="process-freeze", variant="primary", compact=True)
            yield Button("Restart", id="process-restart", variant="success", compact=True)
        yield Static(LEGEND, classes="legend")

    def watch_processes(self) -> None:
        self._show_titles()
        self._render_rows()
        self._label_buttons()

    def watch_tier(self) -> None:
        self._show_titles()
        self._render_rows()

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS if self.tier is None else TIER_COLUMNS

    def _show_titles(self) -> None:
        databases = [p.name for p in self.processes if p.kind == DATABASE_KIND]
        subtitle = SUBTITLE if self.tier is None else "load: calls in flight · health: gRPC"
        self.border_subtitle = subtitle + "".join(f" · {name}: a login" for name in databases)
        if self.tier is None:
            self.border_title = TITLE
        else:
            self.border_title = f"{TITLE} · LB {self.tier.policy} · calls: share of {self.tier.window_s} s"

    def watch_now(self) -> None:
        self._render_rows()

    def _table(self) -> DataTable | None:
        """The table; None while the panel is being taken down (the app's tick can come then)."""
        tables = self.query(DataTable)
        return tables.first() if tables else None

    def _render_rows(self) -> None:
        """Cells updated in place under columns as wide as their widest cell, computed here:
        the table never draws a frame with columns cut to their header's width while it
        measures itself (which a rebuild of the columns on every tick did)."""
        table = self._table()
        if table is None:
            return
        columns = self.columns
        rows = {p.name: _cells(p, self.now, self.tier) for p in self.processes}
        widths = [max([len(label), *(_width(cells[i]) for cells in rows.values())]) for i, label in enumerate(columns)]
        if (
            widths != [c.width for c in table.ordered_columns]
            or list(columns) != [c.key.value for c in table.ordered_columns]
            or list(rows) != [r.key.value for r in table.ordered_rows]
        ):
            row = table.cursor_row
            table.clear(columns=True)
            for label, width in zip(columns, widths, strict=True):
                table.add_column(label, key=label, width=width)
            for name, cells in rows.items():
                table.add_row(*cells, key=name)
            if rows:
                table.move_cursor(row=min(row, len(rows) - 1), animate=False)
            return
        for name, cells in rows.items():
            for label, value in zip(columns, cells, strict=True):
                if table.get_cell(name, label) != value:
                    table.update_cell(name, label, value)

    def pick(self, index: int) -> bool:
        """Select the process at `index` (0: the first row) and focus the table; False if
        there is none there."""
        table = self._table()
        if table is None or not 0 <= index < min(table.row_count, len(self.processes)):
            return False
        table.move_cursor(row=index, animate=False)
        table.focus()
        return True

    @on(DataTable.RowHighlighted)
    def _label_buttons(self) -> None:
        """The buttons say what they do to whom: "Kill BankA", "Thaw BankC"."""
        p = self._selected()
        name = f" {p.name}" if p is not None else ""
        freeze = "thaw" if p is not None and p.state == ProcessState.FROZEN else "freeze"
        for action, button_id in (
            ("kill", "#process-kill"),
            (freeze, "#process-freeze"),
            ("restart", "#process-restart"),
        ):
            buttons = self.query(button_id)
            if not buttons:
                return  # taken down
            button = buttons.first(Button)
            button.label = ACTION_LABEL[action] + name
            button.disabled = p is None
            button.refresh(layout=True)  # a label change alone keeps the old width: "Freeze postgres" wrapped

    @on(Button.Pressed, "#process-kill")
    def _kill_pressed(self) -> None:
        self.action_act("kill")

    @on(Button.Pressed, "#process-freeze")
    def _freeze_pressed(self) -> None:
        self.action_freeze_or_thaw()

    @on(Button.Pressed, "#process-restart")
    def _restart_pressed(self) -> None:
        self.action_act("restart")

    def _selected(self) -> ProcessInfo | None:
        table = self._table()
        if not self.processes or table is None:
            return None
        return self.processes[min(table.cursor_row, len(self.processes) - 1)]

    def action_act(self, action: str) -> None:
        if (p := self._selected()) is not None:
            self.post_message(self.ActionRequested(action, p.name))

    def action_freeze_or_thaw(self) -> None:
        if (p := self._selected()) is not None:
            self.post_message(self.ActionRequested("thaw" if p.state == ProcessState.FROZEN else "freeze", p.name))


def _width(value: object) -> int:
    return value.cell_len if isinstance(value, Text) else len(str(value))


def _cells(p: ProcessInfo, now: float, tier: Tier | None = None) -> tuple:
    """The row of `p`; with a tier, its share of the calls and its load after the state."""
    uptime = "-" if p.started_at is None or p.state not in RUNNING else duration(now - p.started_at)
    if p.pid is not None:
        pid = Text(str(p.pid))
    elif p.exit_code is not None:
        pid = Text(f"exit {p.exit_code}", style="red")  # why it is down
    else:
        pid = Text("-")
    cells = (
        Text(p.name, style="bold"),
        Text(p.state, style=STATE_STYLE.get(p.state, "")),
        pid,
        str(p.port),
        uptime,
        Text(str(p.restarts), justify="right"),
        Text(p.health.lower().replace("_", " "), style=HEALTH_STYLE.get(p.health, "")),
    )
    if tier is None:
        return cells
    return (*cells[:2], *_tier_cells(p, tier), *cells[2:5], cells[6])


def _tier_cells(p: ProcessInfo, tier: Tier) -> tuple[Text, Text]:
    """(share of the calls, calls in flight) of a replica; blank for a bank."""
    load = tier.load(p.name)
    if load is None:
        return Text(""), Text("")
    share = tier.share(p.name)
    calls = Text("-" if share is None else f"{share:.0%}", justify="right", style="bold" if share else "dim")
    in_flight = "-" if load.in_flight is None or p.state not in RUNNING else str(load.in_flight)
    return calls, Text(in_flight, justify="right", style="" if in_flight != "-" else "dim")
