"""One JSON object per line on stdout: what every process says about itself.

Fields (all optional but time/process/level/event): time, process, level, event,
method, user, txn, bank, amount_cents, code, ms, phase, vote, decision, reason, msg.
Never pass a password, token or key to `emit`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

_process = "strife"
_out = sys.stdout


def configure(process: str, out=None) -> None:
    global _process, _out
    _process = process
    if out is not None:
        _out = out


def emit(event: str, level: str = "info", **fields: Any) -> None:
    record = {"time": round(time.time(), 3), "process": _process, "level": level, "event": event}
    record.update({k: v for k, v in fields.items() if v is not None})
    try:
        _out.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        _out.flush()
    except (BrokenPipeError, ValueError):
        pass  # our reader is gone; the process is about to be stopped
