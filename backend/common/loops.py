"""Background chores run on a schedule: one that outlives its own failures, and the probe that
measures how late the event loop runs what is ready."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from backend.common import jsonlog, metrics
from backend.common.events import Event


async def every(interval_s: float, chore: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `chore` every `interval_s`, forever; a failure (the store down, say) is one
    warning line naming `what`, and the next round runs as usual."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await chore()
        except Exception as exc:  # noqa: BLE001 - keep going, say why
            jsonlog.emit(Event.RESEND_ERROR, level="warning", msg=f"{what}: {type(exc).__name__}: {exc}")


LAG_PROBE_S = 0.05


async def measure_lag() -> None:
    """Sleep LAG_PROBE_S over and over; how much later than asked each wake-up comes is the
    time ready work waits for the loop (metrics.LOOP_LAG_SECONDS)."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(LAG_PROBE_S)
        metrics.LOOP_LAG_SECONDS.observe(max(0.0, time.perf_counter() - started - LAG_PROBE_S))
