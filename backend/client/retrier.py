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


class Retrier:
    """`start()` inside the running loop, `await stop()` when done; `wake()` after a
    pay, a login or a gateway restart to try at once. `on_round(report)` is called
    after every round that sent something."""

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
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="strife-retrier")

    def wake(self) -> None:
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
            wait_s = await self.round()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait_s)
            except TimeoutError:
                pass

    async def round(self) -> float:
        """Send what is due now; return how long to wait before the next round."""
        try:
            session = self.client.session
            if session is None:
                return self.idle_poll_s  # nothing may be sent until someone logs in
            report = await self.client.sync(due_only=True)
        except ClientError as exc:
            self.last_error = exc
            return ERROR_PAUSE_S
        except Exception as exc:  # noqa: BLE001 - a background loop must not die; keep the reason
            self.last_error = ClientError("INTERNAL", f"{type(exc).__name__}: {exc}")
            return ERROR_PAUSE_S
        self.rounds += 1
        self.last_error = report.stopped_by
        if report.deliveries and self.on_round is not None:
            self.on_round(report)
        if not report.remaining:
            return self.idle_poll_s
        next_due = min(e.next_retry_at for e in report.remaining)
        return min(self.idle_poll_s, max(0.05, next_due - time.time()))
