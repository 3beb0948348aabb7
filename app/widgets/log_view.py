"""Logs: the JSON lines of every process, one formatted line each, filterable."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Label, RichLog, Select

from app.format import clock_time, short_id
from app.model import LogRecord

MAX_RECORDS = 2000
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
LEVEL_NAME = {"warning": "WARN", "critical": "CRIT"}
LEVEL_STYLE = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red", "critical": "bold white on red"}
# Shown first, in this order; fields named like a secret are never shown (a process must not
# log one; if it does, we still hide it).
_COLUMNS = {"method", "user", "code", "ms", "phase"}
_SECRET_WORDS = ("password", "token", "secret", "private", "authorization", "cookie")
_ALL = "all"


class LogView(Vertical):
    processes: reactive[tuple[str, ...]] = reactive(tuple, init=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Logs: every process's JSON lines"
        self.border_subtitle = f"keeps the last {MAX_RECORDS} lines · tab to the filters below"
        self._records: deque[LogRecord] = deque(maxlen=MAX_RECORDS)

    def compose(self) -> ComposeResult:
        yield RichLog(max_lines=MAX_RECORDS, wrap=False, auto_scroll=True)
        with Horizontal(id="log-filters"):
            yield Label("Process")
            yield Select([("all processes", _ALL)], value=_ALL, allow_blank=False, id="log-process", compact=True)
            yield Label("Level")
            yield Select(
                [
                    ("info and up", "info"),
                    ("all, with health probes", _ALL),
                    ("warnings and errors", "warning"),
                    ("errors only", "error"),
                ],
                value="info",
                allow_blank=False,
                id="log-level",
                compact=True,
            )

    def watch_processes(self, names: tuple[str, ...]) -> None:
        select = self.query_one("#log-process", Select)
        value = select.value
        select.set_options([("all processes", _ALL), *((n, n) for n in names)])
        select.value = value if value in names else _ALL

    def append(self, record: LogRecord) -> None:
        self._records.append(record)
        if self._shown(record):
            self.query_one(RichLog).write(format_record(record))

    def on_select_changed(self) -> None:
        log = self.query_one(RichLog)
        log.clear()
        for record in self._records:
            if self._shown(record):
                log.write(format_record(record))

    def _shown(self, record: LogRecord) -> bool:
        process = self.query_one("#log-process", Select).value
        level = self.query_one("#log-level", Select).value
        if process != _ALL and record.process != process:
            return False
        return level == _ALL or LEVELS.get(record.level, 20) >= LEVELS[str(level)]


def format_record(r: LogRecord) -> Text:
    """'14:03:27.512 gateway  WARN  rpc Pay alice UNAVAILABLE 14.2 ms txn=7aa3f9'."""
    f = r.fields
    line = Text()
    line.append(clock_time(r.time), style="dim")
    line.append(f" {r.process:<8.8}", style="bold")
    line.append(f" {LEVEL_NAME.get(r.level, r.level.upper()):<5.5} ", style=LEVEL_STYLE.get(r.level, ""))
    line.append(f"{r.event} {f['phase']}" if "phase" in f else r.event)
    if "method" in f:
        line.append(f" {str(f['method']).rsplit('/', 1)[-1]}", style="cyan")
    if "user" in f:
        line.append(f" {f['user']}", style="bold")
    if "code" in f:
        line.append(f" {f['code']}", style="green" if f["code"] == "OK" else "yellow")
    if isinstance(f.get("ms"), (int, float)):
        line.append(f" {f['ms']:.1f} ms", style="dim")
    for name, value in f.items():
        if name in _COLUMNS or any(word in name.lower() for word in _SECRET_WORDS):
            continue
        line.append(f"  {name}=", style="dim").append(short_id(str(value)) if name == "txn" else str(value))
    return line
