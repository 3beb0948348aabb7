"""The Retrier's all-now follow-ups after a process came back, in process."""

from __future__ import annotations

import asyncio
import time

from backend.client.gateway_client import SyncReport
from backend.client.retrier import Retrier


class _Entry:
    def __init__(self, next_retry_at: float) -> None:
        self.next_retry_at = next_retry_at


class StubbornClient:
    """Two queued payments: one due in 0.1 s (so due-only rounds keep coming sooner than
    any follow-up), one far off that only an all-now round sends, and only once the
    first all-now round has failed (a bank still reconnecting)."""

    def __init__(self) -> None:
        self.session = object()
        self.all_now_rounds = 0
        self.far_sent = False

    async def sync(self, due_only: bool = False) -> SyncReport:
        if not due_only:
            self.all_now_rounds += 1
            self.far_sent = self.all_now_rounds >= 2
        now = time.time()
        remaining = [_Entry(now + 0.1)] + ([] if self.far_sent else [_Entry(now + 600)])
        return SyncReport("bob", remaining=remaining)  # type: ignore[arg-type]


async def test_follow_ups_after_a_wake_happen_even_when_due_only_rounds_come_sooner():
    client = StubbornClient()
    retrier = Retrier(client, idle_poll_s=600)  # type: ignore[arg-type]
    async with retrier:
        await asyncio.sleep(0.05)
        retrier.wake(all_now=True)  # the first all-now round fails to send the far one
        for _ in range(300):  # the follow-up comes 0.5 s later (FOLLOW_UPS_S[0])
            if client.far_sent:
                break
            await asyncio.sleep(0.01)
    assert client.far_sent, f"no all-now follow-up ran ({client.all_now_rounds} all-now rounds)"
