"""Logs: the JSON lines of every process, one formatted line each, filterable.

Lines are shown in time order across processes (each process's lines reach us
through its own pipe, a few milliseconds apart, so a late line is put in its
place rather than at the bottom), wrapped to the width, and the view follows the
newest line, through resizes too, until the user scrolls up (back at the bottom,
it follows again) or presses f (paused until f again).

Each process has its own colour in the process column. The control room's own
polling (its calls with the `operator` certificate, and health probes) is hidden
unless "show the control room's own calls" is ticked. `/` opens a search field:
only lines containing the text (case-insensitive) are shown; Esc clears it.
`only_payment` (L on a 2PC row, or l in a payment's story) shows only the lines of one
payment's transactions (every attempt under its idempotency key); Esc shows all again.
The keys are handled in on_key, not BINDINGS (the Keys panel lists every panel's
BINDINGS); the panel's subtitle names them."""

from __future__ import annotations

import bisect
import itertools
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Checkbox, Input, Label, Select, Static

from app.format import clock_time, short_id
from app.model import LogRecord
from backend.common.events import Event

MAX_RECORDS = 2000
CONTINUATION_INDENT = 2  # a long line goes on below, indented so it does not read as a new line
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
LEVEL_NAME = {"warning": "WARN", "critical": "CRIT"}
LEVEL_STYLE = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red", "critical": "bold white on red"}
# Shown first, in this order; fields named like a secret are never shown (a process must not
# log one; if it does, we still hide it).
_COLUMNS = {"method", "user", "code", "ms", "phase"}
_SECRET_WORDS = ("password", "token", "secret", "private", "authorization", "cookie")
_ALL = "all"
# A colour per process in the process column: the gateway its own, each bank one of these by
# its name (BankA, BankB, ... or Bank01, Bank02, ...: the next colour each; other names by a
# hash), so a bank keeps its colour from run to run. None is a level's colour (yellow, red).
GATEWAY_STYLE = "bold #5fafff"
BANK_STYLES = ("bold #d787ff", "bold #87d75f", "bold #ffaf5f", "bold #5fd7d7", "bold #ff87af", "bold #afafff")
_BANK_NAME = re.compile(r"Bank(?:([A-Z])|(\d+))")
REPLICA_NAME = re.compile(r"gw-\d+")  # a gateway replica of the tier (backend.supervisor): the gateway's colour
# The control room's own calls: what it asks with the `operator` certificate (balances,
# accounts), its health probes (no role: open to every certificate) and the tier's discovery
# (ListGateways: every balancing client, the control room's among them, and every bank asks it
# every few seconds). What the operator does on purpose (slow motion) stays in view.
_OPERATOR = "operator"
_HEALTH = "/grpc.health.v1.Health/"
_DISCOVERY = "/strife.v1.Gateway/ListGateways"
_OPERATOR_ACTIONS = {"SetSlowMotion"}
FOLLOWING = "following · f pauses · / searches · tab to the filters"
PAUSED = "paused: f follows again · / searches · tab to the filters"


Key = tuple[float, int]  # (time, arrival number): lines of the same time stay in arrival order


@dataclass
class _Entry:
    key: Key
    text: Text
    strips: list[Strip]  # the text wrapped to the current width


class LogLines(ScrollView, can_focus=True):
    """Formatted log lines in time order, wrapped to the width, the newest in view unless
    the user scrolled up (Textual's anchor: kept at the bottom as lines come and the size
    changes, released by a scroll up, taken again at the bottom)."""

    DEFAULT_CSS = """
    LogLines {
        height: 1fr;
        background: $surface;
        color: $foreground;
        padding: 0 1;
        overflow-x: hidden;
        overflow-y: scroll;
        &:focus { background-tint: $foreground 5%; }
    }
    """

    def __init__(self, max_lines: int = MAX_RECORDS, **kwargs) -> None:
        super().__init__(**kwargs)
        assert max_lines > 0
        self.max_lines = max_lines  # log lines (records), however many rows each wraps to
        self._entries: list[_Entry] = []  # in key order
        self._keys: list[Key] = []
        self._rows: list[Strip] = []  # every entry's strips, in order: what is drawn
        self._width = 0  # what the strips are wrapped to; 0 until the size is known
        self._arrivals = itertools.count()

    @property
    def following(self) -> bool:
        """True while the newest line is kept in view."""
        return self.is_anchored and not self._anchor_released

    def on_mount(self) -> None:
        self.anchor()

    def follow(self, follow: bool = True) -> None:
        """Follow the newest line (and show it now), or pause: stay put as lines come, even
        at the bottom, until follow() again."""
        self.anchor(follow)

    @property
    def paused(self) -> bool:
        """Paused (f): not following even at the bottom; unlike a scroll up, which a
        scroll back to the bottom undoes."""
        return not self.is_anchored

    def add(self, at: float, text: Text) -> None:
        """Show `text` in its place by time `at` (at the bottom unless it came late)."""
        key = (at, next(self._arrivals))
        entry = _Entry(key, text, self._wrap(text))
        i = bisect.bisect_right(self._keys, key)
        if i == len(self._entries):
            self._rows.extend(entry.strips)
        else:
            row = sum(len(e.strips) for e in self._entries[:i])
            self._rows[row:row] = entry.strips
        self._entries.insert(i, entry)
        self._keys.insert(i, key)
        dropped = 0
        while len(self._entries) > self.max_lines:
            dropped += len(self._entries.pop(0).strips)
            self._keys.pop(0)
        del self._rows[:dropped]
        self._resized_content()
        if dropped and not self.following:  # keep the lines the user is reading in place
            self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False, immediate=True)

    def replace(self, lines: Iterable[tuple[float, Text]]) -> None:
        """Show these lines instead (oldest to newest or in any order), the newest in view
        (and followed, unless paused)."""
        self._entries, self._keys, self._rows = [], [], []
        for at, text in lines:
            self.add(at, text)
        if self.paused:
            self.scroll_end(animate=False, immediate=True)
        else:
            self.anchor()

    @property
    def texts(self) -> list[Text]:
        """The lines shown, in time order (for tests and the tooltip-less curious)."""
        return [e.text for e in self._entries]

    def on_resize(self, event: events.Resize) -> None:
        width = self.scrollable_content_region.width
        if width == self._width:
            return
        top = self._entry_at_row(int(self.scroll_y))
        self._width = width
        for entry in self._entries:
            entry.strips = self._wrap(entry.text)
        self._rows = [strip for entry in self._entries for strip in entry.strips]
        self._resized_content()
        if not self.following and top is not None:  # keep the first line read at the top
            row = sum(len(e.strips) for e in self._entries[:top])
            self.scroll_to(y=row, animate=False, immediate=True)

    def _entry_at_row(self, row: int) -> int | None:
        seen = 0
        for i, entry in enumerate(self._entries):
            seen += len(entry.strips)
            if seen > row:
                return i
        return None

    def _resized_content(self) -> None:
        self.virtual_size = Size(self._width, len(self._rows))
        self.refresh()

    def _wrap(self, text: Text) -> list[Strip]:
        return wrap(text, self._width, self.app.console)

    def render_line(self, y: int) -> Strip:
        row = int(self.scroll_y) + y
        width = self.scrollable_content_region.width
        if row >= len(self._rows):
            return Strip.blank(width, self.rich_style)
        return self._rows[row].crop_extend(0, width, self.rich_style).apply_style(self.rich_style)


def wrap(text: Text, width: int, console: Console) -> list[Strip]:
    """`text` as rows of at most `width` cells: whole if it fits, else folded, the rows
    after the first indented by CONTINUATION_INDENT. No rows while the width is unknown."""
    if width <= 0:
        return []
    if "\n" not in text.plain and text.cell_len <= width:
        return [Strip(text.render(console), text.cell_len)]
    indent = CONTINUATION_INDENT if width > 4 * CONTINUATION_INDENT else 0
    first, *rest = text.wrap(console, width - indent, overflow="fold")
    rows = [first, *(Text(" " * indent).append_text(line) for line in rest)]
    return [Strip(row.render(console)) for row in rows]


class LogView(Vertical):
    DEFAULT_CSS = """
    LogView {
        #log-search-row { height: auto; display: none; border-top: solid $primary-darken-2; }
        #log-payment { height: 1; display: none; background: $accent-muted; padding: 0 1; }
        #log-payment.-on { display: block; }
        #log-search-row.-open { display: block; }
        #log-search-row Label { padding: 0 1; color: $text-muted; }
        #log-search { width: 1fr; background: $background; }
        #log-filters { layout: grid; grid-size: 5 1; grid-columns: auto 28 auto 28 1fr; grid-rows: 1; }
        #log-own { width: auto; background: $surface; }
        &.-narrow #log-filters { grid-size: 4 2; grid-columns: auto 1fr auto 1fr; }
        &.-narrow #log-own { column-span: 4; }
    }
    """
    NARROW = 110  # under this width the switch goes below the two dropdowns

    processes: reactive[tuple[str, ...]] = reactive(tuple, init=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = f"Logs: every process's JSON lines, in time order (the last {MAX_RECORDS})"
        self.border_subtitle = FOLLOWING
        self._records: list[LogRecord] = []  # in key order, at most MAX_RECORDS
        self._keys: list[Key] = []
        self._arrivals = itertools.count()
        self._search = ""  # lower case; "" shows every line
        self._txns: frozenset[str] = frozenset()  # only these transactions' lines; empty: every line

    def compose(self) -> ComposeResult:
        yield Static(id="log-payment")
        yield LogLines(MAX_RECORDS)
        with Horizontal(id="log-search-row"):
            yield Label("Search")
            yield Input(
                placeholder="text in the line · enter: to the lines · esc: clear", id="log-search", compact=True
            )
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
            yield Checkbox("show the control room's own calls", value=False, id="log-own", compact=True)

    def on_mount(self) -> None:
        self.watch(self.query_one(LogLines), "scroll_y", self._show_follow_state, init=False)

    def on_resize(self) -> None:
        self.set_class(self.size.width < self.NARROW, "-narrow")

    def watch_processes(self, names: tuple[str, ...]) -> None:
        select = self.query_one("#log-process", Select)
        value = select.value
        select.set_options([("all processes", _ALL), *((n, n) for n in names)])
        select.value = value if value in names else _ALL

    @property
    def following(self) -> bool:
        return self.query_one(LogLines).following

    @property
    def searching(self) -> bool:
        return self.query_one("#log-search-row").has_class("-open")

    def append(self, record: LogRecord) -> None:
        key = (record.time, next(self._arrivals))
        i = bisect.bisect_right(self._keys, key)
        self._records.insert(i, record)
        self._keys.insert(i, key)
        if len(self._records) > MAX_RECORDS:
            del self._records[0], self._keys[0]
        if self._shown(record):
            text = _line(record)
            if self._matches(text):
                self.query_one(LogLines).add(record.time, text)

    def toggle_follow(self) -> None:
        """f: pause following the newest line, or follow it again (also after a scroll up)."""
        lines = self.query_one(LogLines)
        lines.follow(not lines.following)
        self._show_follow_state()

    def open_search(self) -> None:
        self.query_one("#log-search-row").add_class("-open")
        self.query_one("#log-search", Input).focus()

    def close_search(self) -> None:
        """Clear the search, close the field, back to the lines."""
        field = self.query_one("#log-search", Input)
        self.query_one(LogLines).focus()
        self.query_one("#log-search-row").remove_class("-open")
        if field.value:
            field.value = ""  # Input.Changed shows every line again
        self._search = ""
        self._refilter()

    @property
    def payment_txns(self) -> frozenset[str]:
        return self._txns

    def only_payment(self, txn_ids: Iterable[str], what: str) -> None:
        """Show only the lines of `txn_ids` (one payment's attempts); `what` names it."""
        self._txns = frozenset(txn_ids)
        label = self.query_one("#log-payment", Static)
        label.update(Text.assemble(("Only ", "bold"), what, ("   esc shows every line", "dim")))
        label.set_class(bool(self._txns), "-on")
        self._refilter()
        self.query_one(LogLines).focus()

    def every_payment(self) -> None:
        self._txns = frozenset()
        self.query_one("#log-payment").remove_class("-on")
        self._refilter()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.searching:
            event.stop()
            self.close_search()
        elif event.key == "escape" and self._txns and not isinstance(self.app.focused, Input):
            event.stop()
            self.every_payment()
        elif isinstance(self.app.focused, Input):
            return  # letters typed into the search field
        elif event.key == "slash":
            event.stop()
            self.open_search()
        elif event.key == "f":
            event.stop()
            self.toggle_follow()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        search = event.value.strip().lower()
        if search != self._search:
            self._search = search
            self._refilter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(LogLines).focus()  # the search stays until esc

    def on_select_changed(self) -> None:
        self._refilter()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self._refilter()

    def _refilter(self) -> None:
        texts = ((r.time, _line(r)) for r in self._records if self._shown(r))
        self.query_one(LogLines).replace((at, text) for at, text in texts if self._matches(text))
        self._show_follow_state()

    def _show_follow_state(self, *_: object) -> None:
        subtitle = FOLLOWING if self.following else PAUSED
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle

    def _matches(self, text: Text) -> bool:
        return not self._search or self._search in text.plain.lower()

    def _shown(self, record: LogRecord) -> bool:
        process = self.query_one("#log-process", Select).value
        level = self.query_one("#log-level", Select).value
        if process != _ALL and record.process != process:
            return False
        if self._txns and record.fields.get("txn") not in self._txns:
            return False
        if is_own_call(record) and not self.query_one("#log-own", Checkbox).value:
            return False
        return level == _ALL or LEVELS.get(record.level, 20) >= LEVELS[str(level)]


def is_own_call(r: LogRecord) -> bool:
    """A call the control room makes by itself: its polling with the `operator` certificate
    (accounts, balances) and its health probes."""
    if r.event != Event.RPC:
        return False
    method = str(r.fields.get("method", ""))
    if method.startswith(_HEALTH) or method == _DISCOVERY:
        return True
    return r.fields.get("role") == _OPERATOR and method.rsplit("/", 1)[-1] not in _OPERATOR_ACTIONS


def process_style(process: str) -> str:
    """The process column's style: the gateway's, or a bank's by its name (stable across runs)."""
    if process == "gateway" or REPLICA_NAME.fullmatch(process):
        return GATEWAY_STYLE
    match = _BANK_NAME.fullmatch(process)
    if match and match[1]:
        index = ord(match[1]) - ord("A")
    elif match:
        index = int(match[2]) - 1
    else:
        index = zlib.crc32(process.encode())
    return BANK_STYLES[index % len(BANK_STYLES)]


def _line(r: LogRecord) -> Text:
    return format_record(r, process_style(r.process))


def format_record(r: LogRecord, process_style: str = "bold") -> Text:
    """'14:03:27.512 gateway  WARN  rpc Pay alice UNAVAILABLE 14.2 ms txn=7aa3f9'."""
    f = r.fields
    line = Text()
    line.append(clock_time(r.time), style="dim")
    line.append(f" {r.process:<8.8}", style=process_style)
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
