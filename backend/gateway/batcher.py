"""Send many small requests to one bank as few calls.

Items submitted while a call is in flight wait and leave together in the next
call (at most MAX_BATCH items; at most MAX_IN_FLIGHT calls at once), the way the
database groups commits. Under load one call carries many transactions; a lone
item leaves at once. An item whose caller stopped waiting before it left is not
sent at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from backend.common import metrics
from backend.common.limits import MAX_BATCH

Item = TypeVar("Item")
Result = TypeVar("Result")

# One call in flight per bank and kind: under load the next call then carries every
# item that arrived meanwhile (2 in flight left ~2 items per call, and each call
# costs the gateway and the bank about as much CPU as a whole small batch).
MAX_IN_FLIGHT = 1


class Batcher(Generic[Item, Result]):
    def __init__(
        self, send: Callable[[list[Item]], Awaitable[Sequence[Result]]], stage: str, linger_s: float = 0.0
    ) -> None:
        """`stage`: the name of its waits and calls in metrics.STAGE_SECONDS ({stage}_queue, {stage}_call).
        `linger_s`: an item that finds the batcher idle waits this long for company (0: it
        leaves at once), unless it is submitted as urgent."""
        self._send = send
        self.linger_s = linger_s
        self._lingering: asyncio.TimerHandle | None = None
        self._queued = metrics.STAGE_SECONDS.labels(f"{stage}_queue")
        self._called = metrics.STAGE_SECONDS.labels(f"{stage}_call")
        self._pending: list[tuple[Item, asyncio.Future, float]] = []
        self._in_flight = 0

    def submit_nowait(self, item: Item, urgent: bool = False) -> asyncio.Future:
        """Queue `item`; the future gets its result. Cancel it to withdraw an item not yet sent.
        An urgent item (and every item with it) leaves without lingering."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future, time.perf_counter()))
        if urgent or not self.linger_s or len(self._pending) >= MAX_BATCH:
            self.leave_now()
        elif self._lingering is None and self._in_flight == 0:
            self._lingering = loop.call_later(self.linger_s, self.leave_now)
        return future

    def leave_now(self) -> None:
        """Send what waits now, without lingering further."""
        self._stop_lingering()
        self._kick()

    def _stop_lingering(self) -> None:
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None

    def _kick(self) -> None:
        while self._pending and self._in_flight < MAX_IN_FLIGHT:
            batch = self._next_batch()
            if batch:
                self._in_flight += 1
                asyncio.get_running_loop().create_task(self._flush(batch))

    def _next_batch(self) -> list[tuple[Item, asyncio.Future]]:
        """The next MAX_BATCH waiting items, less those withdrawn meanwhile, out of the queue."""
        now = time.perf_counter()
        batch = []
        for item, future, queued_at in self._pending[:MAX_BATCH]:
            if not future.done():
                batch.append((item, future))
                self._queued.observe(now - queued_at)
        del self._pending[:MAX_BATCH]
        return batch

    def take(self) -> list[tuple[Item, asyncio.Future]]:
        """The items waiting to leave (at most MAX_BATCH), handed to another call to carry:
        the caller settles them (`settle`). An item withdrawn meanwhile is dropped."""
        taken = self._next_batch()
        if not self._pending:
            self._stop_lingering()
        return taken

    def settle(
        self, batch: list[tuple[Item, asyncio.Future]], results: Sequence[Result] | BaseException, started: float
    ) -> None:
        """Give each waiter of `batch` its result, or every waiter the failure; the call began at `started`."""
        if not isinstance(results, BaseException) and len(results) != len(batch):
            # never settle some waiters and strand the rest
            results = RuntimeError(f"a batch answer has {len(results)} results for {len(batch)} items")
        if isinstance(results, BaseException):
            for _, future in batch:
                if not future.done():
                    future.set_exception(results)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        took = time.perf_counter() - started
        for _ in batch:
            self._called.observe(took)

    async def _flush(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        started = time.perf_counter()
        outcome: Sequence[Result] | BaseException
        try:
            outcome = await self._send([item for item, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - every waiter gets the failure
            outcome = exc
        try:
            self.settle(batch, outcome, started)
        finally:  # whatever happened, the next call may leave
            self._in_flight -= 1
            self._kick()
