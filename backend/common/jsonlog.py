"""One JSON object per line on stdout: what every process says about itself.

Fields (all optional but time/process/level/event): time, process, level, event,
method, user, txn, bank, amount_cents, code, ms, phase, vote, decision, reason, msg.
Never pass a password, a token or a private key to `emit` (an idempotency key is no
secret: it is scoped to its user, who must also hold a token).

Inside an event loop, lines are buffered and written together at most FLUSH_S
later (one write instead of one per line: logging was a tenth of the gateway's
CPU under load), each encoded by orjson (in a tenth of the json module's time);
outside a loop, and for errors, they are written at once.
`flush()` before any deliberate exit.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import time
from typing import Any

import orjson

FLUSH_S = 0.02
MAX_BUFFERED = 512

_process = "strife"
_out = sys.stdout
_buffer: list[str] = []
_flush_scheduled = False


def configure(process: str, out=None) -> None:
    global _process, _out
    _process = process
    if out is not None:
        _out = out


def emit(event: str, level: str = "info", **fields: Any) -> None:
    """Write one line: the event and the fields that are not None."""
    line = record(event, level)
    line.update({k: v for k, v in fields.items() if v is not None})
    write(line)


def record(event: str, level: str = "info") -> dict[str, Any]:
    """The fields every line has; add the rest and `write` it."""
    return {"time": round(time.time(), 3), "process": _process, "level": level, "event": event}


def write(line: dict[str, Any]) -> None:
    global _flush_scheduled
    _buffer.append(orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode())
    if line["level"] == "error" or len(_buffer) >= MAX_BUFFERED:
        flush()
        return
    if _flush_scheduled:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        flush()
        return
    _flush_scheduled = True
    loop.call_later(FLUSH_S, flush)


def flush() -> None:
    global _flush_scheduled
    _flush_scheduled = False
    if not _buffer:
        return
    text = "\n".join(_buffer) + "\n"
    _buffer.clear()
    try:
        _out.write(text)
        _out.flush()
    except (BrokenPipeError, ValueError):
        pass  # our reader is gone; the process is about to be stopped


atexit.register(flush)
