"""Graphs: the last minute at a glance, one Textual Sparkline per row.

Rows: committed payments/s, aborts/s, p50 and p99 latency, and each bank's total balance.
Every row covers the same seconds (the last WINDOW_S finished seconds before `now`), so a
drop in throughput lines up with the spike in aborts and the bank whose balance stopped
moving. Beside each graph: its current value, and the number its top bar stands for
(each graph is scaled to its own range).

Pure in time: no clock is read here. The app sets `now` every second and passes the time
of every value it records; tests do the same with fixed times. Every history is bounded.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Label, Sparkline

from app.messages import StatsChanged
from app.model import LATENCY_WINDOW_PAYMENTS, RATE_WINDOW_S, Balances, TxnRow
from backend.common.money import format_cents
from backend.common.states import Decision

WINDOW_S = 60  # seconds every graph covers, newest on the right
MAX_SAMPLES = 8 * WINDOW_S  # per history of sampled values: stats (1/s), balances (up to 5/s)
MAX_ABORTED_IDS = 1_000  # txn ids remembered so an abort upserted again is counted once
MAX_BANKS = 8  # rows for banks; a bank beyond this is not graphed
TALL_ROW_LINES = 2  # the least height of a tall graph: when the panel has room for every row this tall
MAX_ROW_LINES = 5  # the most: on a projector's 50 rows the graphs use the height, up to this

TITLE = f"Graphs: the last {WINDOW_S} s"
SUBTITLE = "each graph scaled to its own range"

Sample = tuple[float, float | None]  # (time, value); None: not known then (no latency yet, bank unreachable)


class GraphRow(Horizontal):
    """One graph: what it shows, its value now, the sparkline, and what its top bar stands for."""

    DEFAULT_CSS = """
    GraphRow { height: 1; }
    GraphRow .graph-name { width: 11; color: $text-muted; }
    GraphRow .graph-value { width: 14; text-align: right; text-style: bold; padding-right: 1; }
    GraphRow Sparkline { width: 1fr; height: 1; }
    GraphRow .graph-note { width: 16; color: $text-muted; padding-left: 1; }
    GraphRow.-tall Sparkline { height: 100%; }
    GraphRow.-tall Label { height: 100%; content-align-vertical: bottom; }  /* on the graph's baseline */
    GraphRow.-bad .graph-value { color: $error; }
    """

    def __init__(self, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        # Built here, not in compose, so values can be set before the row is mounted.
        self.name_label = Label(title, classes="graph-name")
        self.value_label = Label("-", classes="graph-value")
        self.sparkline = Sparkline([])
        self.note_label = Label("", classes="graph-note")

    def compose(self) -> ComposeResult:
        yield self.name_label
        yield self.value_label
        yield self.sparkline
        yield self.note_label

    def show(self, value: str, data: Sequence[float], note: str, bad: bool = False) -> None:
        self.value_label.update(value)
        if list(self.sparkline.data or ()) != list(data):
            self.sparkline.data = list(data)
        self.note_label.update(note)
        self.set_class(bad, "-bad")

    @property
    def value_text(self) -> str:
        return str(self.value_label.content)

    @property
    def note_text(self) -> str:
        return str(self.note_label.content)


class GraphsPanel(Vertical):
    """Fed by the app: record_stats, record_txn, record_balances (each with its time), and `now`."""

    DEFAULT_CSS = """
    GraphsPanel {
        height: 1fr;
        padding: 0 1;
        overflow-y: auto;
        border: round $primary-darken-2;
        border-title-color: $text;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        background: $surface;
    }
    GraphsPanel:focus-within { border: round $accent; }
    GraphsPanel #graph-payments Sparkline > .sparkline--max-color { color: $success; }
    GraphsPanel #graph-payments Sparkline > .sparkline--min-color { color: $success 30%; }
    GraphsPanel #graph-aborts Sparkline > .sparkline--max-color { color: $error; }
    GraphsPanel #graph-aborts Sparkline > .sparkline--min-color { color: $error 30%; }
    GraphsPanel .latency Sparkline > .sparkline--max-color { color: $warning; }
    GraphsPanel .latency Sparkline > .sparkline--min-color { color: $warning 30%; }
    GraphsPanel .bank Sparkline > .sparkline--max-color { color: $primary-lighten-2; }
    GraphsPanel .bank Sparkline > .sparkline--min-color { color: $primary-lighten-2 30%; }
    GraphsPanel #graph-axis { height: 1; color: $text-muted; }
    GraphsPanel #graph-axis-gap { width: 25; }
    GraphsPanel #graph-axis-start { width: 1fr; }
    GraphsPanel #graph-axis-end { width: auto; }
    GraphsPanel #graph-axis-note { width: 16; }
    """

    now: reactive[float] = reactive(0.0, init=False)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = TITLE
        self.border_subtitle = SUBTITLE
        self._stats: StatsChanged | None = None
        self._p50_ms: deque[Sample] = deque(maxlen=MAX_SAMPLES)
        self._p99_ms: deque[Sample] = deque(maxlen=MAX_SAMPLES)
        self._aborts: dict[int, int] = {}  # whole second -> payments decided ABORT in it
        self._aborted_ids: OrderedDict[str, None] = OrderedDict()  # aborts counted already, oldest first
        self._balances_cents: dict[str, deque[Sample]] = {}  # bank -> its total over time
        self._rows = {
            "payments": GraphRow("payments/s", id="graph-payments"),
            "aborts": GraphRow("aborts/s", id="graph-aborts"),
            "p50": GraphRow("p50", id="graph-p50", classes="latency"),
            "p99": GraphRow("p99", id="graph-p99", classes="latency"),
        }
        mean = f"the value is the mean of the last {RATE_WINDOW_S} s"
        self._rows["payments"].tooltip = f"Payments decided COMMIT in each second; {mean}"
        self._rows["aborts"].tooltip = f"Payments decided ABORT in each second; {mean}"
        latency = f"Gateway begin -> decision over the last {LATENCY_WINDOW_PAYMENTS} decided payments, each second"
        self._rows["p50"].tooltip = self._rows["p99"].tooltip = latency
        self._bank_rows: dict[str, GraphRow] = {}
        self._show_pending = False

    def compose(self) -> ComposeResult:
        yield from self._rows.values()
        yield from self._bank_rows.values()
        with Horizontal(id="graph-axis"):
            yield Label("", id="graph-axis-gap")
            yield Label(f"{WINDOW_S} s ago", id="graph-axis-start")
            yield Label("now", id="graph-axis-end")
            yield Label("", id="graph-axis-note")

    def on_mount(self) -> None:
        self._show()

    def on_resize(self, event: events.Resize) -> None:
        self._fit_rows()

    def validate_now(self, now: float) -> float:
        """The window never moves back (a clock stepped back, or a test's fixed clock)."""
        return max(now, self.now)

    def watch_now(self) -> None:
        self._show()

    # ------------------------------------------------------------ feed --
    def record_stats(self, stats: StatsChanged, at: float) -> None:
        """The status bar's numbers at `at`: the commits per finished second (right-aligned
        on the window), and p50/p99 as they were then."""
        self._stats = stats
        _append(self._p50_ms, at, stats.p50_ms)
        _append(self._p99_ms, at, stats.p99_ms)
        self._show_soon()

    def record_txn(self, row: TxnRow, at: float) -> None:
        """A 2PC row as it changed at `at`; the first time a payment shows ABORT, it counts
        as an abort in the second of `at` (later upserts of the same payment do not)."""
        if row.decision != Decision.ABORT or row.txn_id in self._aborted_ids:
            return
        self._aborted_ids[row.txn_id] = None
        while len(self._aborted_ids) > MAX_ABORTED_IDS:
            self._aborted_ids.popitem(last=False)
        second = math.floor(at)
        self._aborts[second] = self._aborts.get(second, 0) + 1
        self._forget_old_aborts()
        self._show_soon()

    def record_balances(self, balances: Balances, at: float) -> None:
        """Every bank's total at `at` (an unreachable bank's graph holds its last known total)."""
        for bank in balances.banks:
            history = self._balances_cents.get(bank.bank)
            if history is None:
                if len(self._balances_cents) >= MAX_BANKS:
                    continue
                history = self._balances_cents[bank.bank] = deque(maxlen=MAX_SAMPLES)
                row = self._bank_rows[bank.bank] = GraphRow(bank.bank, classes="bank")
                row.tooltip = f"{bank.bank}'s total over all its accounts"
                if self.is_mounted:
                    self.mount(row, before="#graph-axis")
            _append(history, at, bank.total_cents if bank.reachable else None)
        self._fit_rows()
        self._show_soon()

    # ------------------------------------------------------- what is shown --
    def seconds(self) -> range:
        """The whole seconds the graphs cover: the last WINDOW_S finished before `now`."""
        end = math.floor(self.now)
        return range(end - WINDOW_S, end)

    def payments_per_s(self) -> list[float]:
        rates = list(self._stats.rate_per_s[-WINDOW_S:]) if self._stats else []
        return [0.0] * (WINDOW_S - len(rates)) + [float(r) for r in rates]

    def aborts_per_s(self) -> list[float]:
        return [float(self._aborts.get(s, 0)) for s in self.seconds()]

    def latency_ms(self, which: str) -> list[float]:
        samples = self._p50_ms if which == "p50" else self._p99_ms
        return [v or 0.0 for v in _held(samples, self.seconds())]

    def balance_cents(self, bank: str) -> list[float]:
        """The bank's total at the end of every second; before its first known total, that
        total; while unreachable, the last total known. Empty if never known."""
        held = _held(self._balances_cents.get(bank, ()), self.seconds())
        known = [v for v in held if v is not None]
        if not known:
            return []
        first = known[0]
        out: list[float] = []
        for v in held:
            out.append(first if v is None and not out else (out[-1] if v is None else v))
        return out

    def _show_soon(self) -> None:
        """Once before the next frame, however many values arrive until then (a burst of
        payments upserts its rows many times a second)."""
        if self.is_mounted and not self._show_pending:
            self._show_pending = True
            self.call_after_refresh(self._show)

    def _show(self) -> None:
        self._show_pending = False
        self._forget_old_samples()
        payments = self.payments_per_s()
        aborts = self.aborts_per_s()
        self._rows["payments"].show(f"{_mean_recent(payments):.1f}", payments, f"max {max(payments):.0f}/s")
        aborts_now = _mean_recent(aborts)
        self._rows["aborts"].show(f"{aborts_now:.1f}", aborts, f"max {max(aborts):.0f}/s", bad=aborts_now > 0)
        for which, samples in (("p50", self._p50_ms), ("p99", self._p99_ms)):
            data = self.latency_ms(which)
            now_ms = samples[-1][1] if samples else None
            self._rows[which].show(_ms(now_ms), data, f"max {_ms(max(data))}" if any(data) else "")
        for bank, row in self._bank_rows.items():
            history = self._balances_cents[bank]
            data = self.balance_cents(bank)
            latest = history[-1][1] if history else None
            value = "unreachable" if latest is None else format_cents(int(latest))
            row.show(value, data, _change(data), bad=latest is None)

    def _fit_rows(self) -> None:
        """Every graph as tall as the panel has room for (below the axis line), from
        TALL_ROW_LINES to MAX_ROW_LINES lines; one line each when not every row fits two."""
        rows = [*self._rows.values(), *self._bank_rows.values()]
        room = (self.content_size.height - 1) // len(rows) if self.is_mounted and rows else 0
        lines = min(room, MAX_ROW_LINES) if room >= TALL_ROW_LINES else 1
        gap = 1 if room > TALL_ROW_LINES + 1 else 0  # a blank line above each, where there is room
        lines = min(lines, room - gap) if gap else lines
        for row in rows:
            row.set_class(lines > 1, "-tall")
            row.styles.height = lines
            row.styles.margin = (gap, 0, 0, 0)

    # --------------------------------------------------------- bounded --
    def _forget_old_aborts(self) -> None:
        start = self.seconds().start
        for second in [s for s in self._aborts if s < start]:
            del self._aborts[second]
        while len(self._aborts) > 2 * WINDOW_S:  # times far ahead of `now`: keep the newest
            del self._aborts[min(self._aborts)]

    def _forget_old_samples(self) -> None:
        """Drop samples older than the window, keeping the last one before it (its value
        holds into the window's first seconds)."""
        start = self.seconds().start
        for samples in (self._p50_ms, self._p99_ms, *self._balances_cents.values()):
            while len(samples) > 1 and samples[1][0] < start:
                samples.popleft()
        self._forget_old_aborts()


def _append(samples: deque[Sample], at: float, value: float | None) -> None:
    """Time order is kept: a sample stamped before the last one counts as at the same time."""
    if samples and at < samples[-1][0]:
        at = samples[-1][0]
    samples.append((at, value))


def _held(samples: Iterable[Sample], seconds: range) -> list[float | None]:
    """The value at the end of every second: the last sample before the second ended."""
    out: list[float | None] = []
    it = iter(samples)
    pending = next(it, None)
    value: float | None = None
    for second in seconds:
        while pending is not None and pending[0] < second + 1:
            value = pending[1]
            pending = next(it, None)
        out.append(value)
    return out


def _mean_recent(per_s: Sequence[float]) -> float:
    """Per second over the last RATE_WINDOW_S finished seconds (as the status bar says it)."""
    return sum(per_s[-RATE_WINDOW_S:]) / RATE_WINDOW_S


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _change(cents: Sequence[float]) -> str:
    if not cents:
        return ""
    delta = int(cents[-1] - cents[0])
    if delta == 0:
        return "no change"
    return f"{'+' if delta > 0 else ''}{format_cents(delta)} in {WINDOW_S} s"
