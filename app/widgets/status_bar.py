"""The top line: what this is, committed payments per second as a sparkline, recent latency."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label, Sparkline

from app.messages import StatsChanged


class StatusBar(Horizontal):
    stats: reactive[StatsChanged | None] = reactive(None, init=False)

    def compose(self) -> ComposeResult:
        yield Label("Strife control room", id="status-title")
        yield Sparkline([], id="status-sparkline")
        yield Label("waiting for data", id="status-numbers")

    def watch_stats(self, stats: StatsChanged) -> None:
        self.query_one(Sparkline).data = list(stats.rate_per_s)
        now = stats.rate_per_s[-1] if stats.rate_per_s else 0
        self.query_one("#status-numbers", Label).update(
            f"{now} payments/s · p50 {_ms(stats.p50_ms)} · p99 {_ms(stats.p99_ms)}"
        )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
