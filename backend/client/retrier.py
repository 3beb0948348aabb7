"""Retrier: resends the logged-in user's queued payments in the background, each
when its backoff is over, until every one has a final answer (for the control
room, which keeps one running; the CLI calls GatewayClient.sync instead)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from backend.client.errors import ClientError
from backend.client.gateway_client import GatewayClient, SyncReport

IDLE_POLL_S = 5.0  # re-read the outbox this often when nothing is due (another process may add entries)
ERROR_PAUSE_S = 2.0  # after an unexpected error, before trying again
# After wake(all_now=True), rounds that send everything, this long after the one before, while
# something stays queued: the gateway's channel to a bank that just restarted reconnects within
# its max reconnect backoff (1 s, backend/common/tls.py), so the first resend may fail fast.
FOLLOW_UPS_S = (0.5, 1.0, 2.0)


class Retrier:
    """`start()` inside the running loop, `await stop()` when done. `wake()` after a pay or
    a login: look at the outbox again now and send what is due. `wake(all_now=True)` when a
    process came back (the gateway or a bank serving again, a thaw): send every queued
    payment now, whatever its backoff, and again a few times shortly after (FOLLOW_UPS_S)
    while some stay queued, since a bank's peers take up to a second to reconnect to it.
    `on_round(report)` is called after every round that sent something."""

    def __init__(
        self,
        client: GatewayClient,
        on_round: Callable[[SyncReport], None] | None = None,
        idle_poll_s: float = IDLE_POLL_S,
    ) -> None:
        self.client = client
        self.on_round = on_round
        self.idle_poll_s = idle_poll_s
        self.rounds = 0
        self.last_error: ClientError | None = None
        self._wake = asyncio.Event()
        self._all_now = False  # the next round sends every queued payment, due or not
        self._follow_ups: list[float] = []  # delays of the all-now rounds still to come after a wake
        self._left_queued = 0  # the logged-in user's payments still queued after the last round
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="strife-retrier")

    def wake(self, all_now: bool = False) -> None:
        """Run a round now; with all_now, one that sends every queued payment (a process
        came back), followed by up to len(FOLLOW_UPS_S) more while some stay queued."""
        if all_now:
            self._all_now = True
            self._follow_ups = list(FOLLOW_UPS_S)
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def __aenter__(self) -> Retrier:
        self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _run(self) -> None:
        while True:
            # Cleared before the round, so a wake that comes during it starts another at once.
            self._wake.clear()
            all_now, self._all_now = self._all_now, False
            wait_s = await self.round(due_only=not all_now)
            if not self._left_queued:
                self._follow_ups.clear()
            elif self._follow_ups and not self._wake.is_set():
                if self._follow_ups[0] <= wait_s:
                    wait_s, self._all_now = self._follow_ups.pop(0), True
                else:  # a due-only round comes first; the all-now one still follows, that much later
                    self._follow_ups[0] -= wait_s
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
            except TimeoutError:
                pass

    async def round(self, due_only: bool = True) -> float:
        """Send what is due now (everything queued with due_only=False); return how long
        to wait before the next round."""
        self._left_queued = 0
        try:
            session = self.client.session
            if session is None:
                return self.idle_poll_s  # nothing may be sent until someone logs in
            report = await self.client.sync(due_only=due_only)
        except ClientError as exc:
            self.last_error = exc
            return ERROR_PAUSE_S
        except Exception as exc:  # noqa: BLE001 - a background loop must not die; keep the reason
            self.last_error = ClientError("INTERNAL", f"{type(exc).__name__}: {exc}")
            return ERROR_PAUSE_S
        self.rounds += 1
        self.last_error = report.stopped_by
        self._left_queued = len(report.remaining)
        if report.deliveries and self.on_round is not None:
            self.on_round(report)
        if not report.remaining:
            return self.idle_poll_s
        next_due = min(e.next_retry_at for e in report.remaining)
        return min(self.idle_poll_s, max(0.05, next_due - time.time()))
