"""Small text formats shared by the widgets. Times are epoch seconds."""

from __future__ import annotations

import time


def duration(seconds: float) -> str:
    """'12s', '3m 05s', '2h 07m', '3d 04h'."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def relative(at: float | None, now: float) -> str:
    """'in 4s', 'now', '12s ago', or '-' for no time."""
    if at is None:
        return "-"
    delta = at - now
    if abs(delta) < 1:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(-delta)} ago"


def clock_time(at: float) -> str:
    """Local wall-clock time with milliseconds: '14:03:27.512'."""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def short_id(text: str, length: int = 6) -> str:
    return text[:length]


def retry_due(at: float | None, now: float) -> str:
    """When a queued payment is sent again: 'in 4s', or 'due now' once that time has come
    (a retry never happened '1s ago': it is due, or being sent)."""
    if at is None:
        return "-"
    delta = at - now
    return "due now" if delta < 1 else f"in {duration(delta)}"


# Why a send failed, in a few words, from its gRPC status code: never the transport's own
# text ("Stream removed (Socket closed)"), which says nothing to a presenter.
SEND_FAILURE = {
    "UNAVAILABLE": "gateway or bank down",
    "DEADLINE_EXCEEDED": "no answer in time",
    "ABORTED": "still in flight",
    "RESOURCE_EXHAUSTED": "rate limited",
    "UNAUTHENTICATED": "log in again",
    "CANCELLED": "cancelled",
    "INTERNAL": "gateway error",
    "UNKNOWN": "gateway error",
}


def send_failure(code: str) -> str:
    """'gateway or bank down' for UNAVAILABLE, ...; '-' before the first failed send."""
    if not code:
        return "-"
    return SEND_FAILURE.get(code, code.lower().replace("_", " "))
