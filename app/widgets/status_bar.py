"""The top line: what this is, committed payments per second as a sparkline, recent latency."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label, Sparkline

from app.messages import StatsChanged, TrafficChanged
from app.model import LATENCY_WINDOW_PAYMENTS, RATE_WINDOW_S

TITLE = "Strife control room"
MIN_SPARKLINE_CELLS = 20  # below this the wording gets shorter, so the sparkline keeps some history
# What the numbers count, said as fully as the width allows (the tooltip always has the long form).
_WORDINGS = (
    "{rate} payments/s (last {window} s) · p50 {p50} · p99 {p99} (last {n} payments, begin→decision)",
    "{rate} payments/s ({window} s) · p50 {p50} · p99 {p99} (last {n}, begin→decision)",
    "{rate}/s ({window} s) · p50 {p50} · p99 {p99} (last {n})",
)


class StatusBar(Horizontal):
    stats: reactive[StatsChanged | None] = reactive(None, init=False)
    slow_motion_ms: reactive[int] = reactive(0, init=False)
    traffic: reactive[TrafficChanged | None] = reactive(None, init=False)

    def compose(self) -> ComposeResult:
        yield Label(TITLE, id="status-title")
        yield Label("", id="status-slow")
        yield Label("", id="status-traffic")
        yield Sparkline([], id="status-sparkline")
        yield Label("waiting for data", id="status-numbers")

    def watch_traffic(self, traffic: TrafficChanged | None) -> None:
        label = self.query_one("#status-traffic", Label)
        text = traffic_text(traffic) if traffic is not None else ""
        label.update(text)
        label.display = bool(text)
        label.tooltip = text
        self.call_after_refresh(self._show_numbers)

    def watch_slow_motion_ms(self, pause_ms: int) -> None:
        """Impossible to miss while on: every payment is slowed down on purpose."""
        slow = self.query_one("#status-slow", Label)
        slow.update(f"SLOW MOTION {pause_ms} ms" if pause_ms else "")
        slow.display = bool(pause_ms)
        self.call_after_refresh(self._show_numbers)

    def watch_stats(self, stats: StatsChanged) -> None:
        self.query_one(Sparkline).data = list(stats.rate_per_s)
        self._show_numbers()

    def on_resize(self, event: events.Resize) -> None:
        # After the layout pass this event comes from: a width change asked for during it is lost.
        self.call_after_refresh(self._show_numbers)

    def _show_numbers(self) -> None:
        if self.stats is None:
            return
        numbers = self.query_one("#status-numbers", Label)
        slow = self.query_one("#status-slow", Label)
        room = self.size.width - len(TITLE) - 4 - MIN_SPARKLINE_CELLS  # 4: the labels' padding
        room -= slow.outer_size.width if slow.display else 0
        traffic = self.query_one("#status-traffic", Label)
        room -= traffic.outer_size.width if traffic.display else 0
        texts = wordings(self.stats)
        numbers.update(next((t for t in texts if len(t) <= room), texts[-1]))
        numbers.tooltip = texts[0]


def traffic_text(t: TrafficChanged) -> str:
    """'traffic 10/s: 118 ok, 1 declined, 1 queued' (what is not 0); '' when off with nothing left."""
    if not t.per_s and not t.queued:
        return ""
    counts = [f"{t.succeeded} ok"] + [
        f"{n} {what}" for n, what in ((t.declined, "declined"), (t.queued, "queued"), (t.failed, "failed")) if n
    ]
    return f"traffic {t.per_s:g}/s: {', '.join(counts)}" if t.per_s else f"traffic off: {t.queued} queued"


def rate_per_s(stats: StatsChanged, window_s: int = RATE_WINDOW_S) -> float:
    """Committed payments per second over the last `window_s` finished seconds."""
    recent = stats.rate_per_s[-window_s:]
    return sum(recent) / window_s if recent else 0.0


def wordings(stats: StatsChanged) -> list[str]:
    """The numbers, longest wording first."""
    values = {
        "rate": f"{rate_per_s(stats):.1f}",
        "window": RATE_WINDOW_S,
        "p50": _ms(stats.p50_ms),
        "p99": _ms(stats.p99_ms),
        "n": LATENCY_WINDOW_PAYMENTS,
    }
    return [w.format(**values) for w in _WORDINGS]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
