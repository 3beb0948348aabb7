"""A background chore run on a schedule, that outlives its own failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from backend.common import jsonlog
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
