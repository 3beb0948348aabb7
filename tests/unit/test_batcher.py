"""Batcher: a lone item leaves at once, items that arrive during a call leave
together in the next one (at most MAX_BATCH), withdrawn items are not sent, and
every waiter gets its own result or the call's failure."""

from __future__ import annotations

import asyncio

import pytest

from backend.common.limits import MAX_BATCH
from backend.gateway import batcher as batcher_module
from backend.gateway.batcher import Batcher


class FakeBank:
    """A send function whose calls are recorded and, when held, answered when the test says so."""

    def __init__(self, *, hold: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.hold = hold
        self.gates: list[asyncio.Event] = []
        self.failure: BaseException | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    async def send(self, items: list[int]) -> list[str]:
        self.calls.append(list(items))
        gate = asyncio.Event()
        self.gates.append(gate)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold:
                await gate.wait()
            if self.failure is not None:
                raise self.failure
            return [f"r{item}" for item in items]
        finally:
            self.in_flight -= 1

    def answer(self, call: int) -> None:
        """Let call number `call` (0-based) return; later calls stay held."""
        self.gates[call].set()

    def release(self) -> None:
        """Answer every call, now and from now on."""
        self.hold = False
        for gate in self.gates:
            gate.set()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_item_leaves_at_once():
    bank = FakeBank()
    batcher = Batcher(bank.send, "test")
    future = batcher.submit_nowait(7)
    assert await asyncio.wait_for(future, 1) == "r7"
    assert bank.calls == [[7]]


async def test_items_submitted_during_a_call_leave_together_in_the_next_call():
    bank = FakeBank(hold=True)
    batcher = Batcher(bank.send, "test")
    first = batcher.submit_nowait(0)
    await settle()
    assert bank.calls == [[0]]
    later = [batcher.submit_nowait(i) for i in (1, 2, 3)]
    await settle()
    assert bank.calls == [[0]]  # nothing more leaves while a call is in flight
    bank.release()
    assert await first == "r0"
    assert await asyncio.gather(*later) == ["r1", "r2", "r3"]
    assert bank.calls == [[0], [1, 2, 3]]
    assert bank.max_in_flight == batcher_module.MAX_IN_FLIGHT == 1


async def test_a_call_carries_at_most_max_batch_items():
    bank = FakeBank(hold=True)
    batcher = Batcher(bank.send, "test")
    max_batch = MAX_BATCH
    count = 1 + 2 * max_batch + 5
    futures = [batcher.submit_nowait(i) for i in range(count)]
    await settle()
    bank.release()
    results = await asyncio.gather(*futures)
    assert results == [f"r{i}" for i in range(count)]
    assert [len(call) for call in bank.calls] == [1, max_batch, max_batch, 5]
    assert [item for call in bank.calls for item in call] == list(range(count))  # in order, each once


async def test_a_cancelled_item_is_not_sent():
    bank = FakeBank(hold=True)
    batcher = Batcher(bank.send, "test")
    first = batcher.submit_nowait(0)
    await settle()
    withdrawn = batcher.submit_nowait(1)
    kept = batcher.submit_nowait(2)
    withdrawn.cancel()
    bank.release()
    await first
    assert await kept == "r2"
    assert bank.calls == [[0], [2]]
    assert withdrawn.cancelled()


async def test_a_batch_of_only_cancelled_items_makes_no_call_and_the_batcher_goes_on():
    bank = FakeBank(hold=True)
    batcher = Batcher(bank.send, "test")
    first = batcher.submit_nowait(0)
    await settle()
    for future in [batcher.submit_nowait(i) for i in (1, 2)]:
        future.cancel()
    bank.release()
    await first
    await settle()
    assert bank.calls == [[0]]
    assert await asyncio.wait_for(batcher.submit_nowait(3), 1) == "r3"
    assert bank.calls == [[0], [3]]


async def test_cancelling_during_the_call_drops_only_that_answer():
    errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    bank = FakeBank(hold=True)
    batcher = Batcher(bank.send, "test")
    first = batcher.submit_nowait(0)
    await settle()
    batch = [batcher.submit_nowait(i) for i in (1, 2, 3)]
    bank.answer(0)
    await first
    await settle()
    assert bank.calls == [[0], [1, 2, 3]]  # the second call is in flight
    batch[1].cancel()  # item 2 already left: its answer is simply dropped
    bank.answer(1)
    assert await batch[0] == "r1" and await batch[2] == "r3"
    assert batch[1].cancelled()
    bank.release()
    assert await asyncio.wait_for(batcher.submit_nowait(4), 1) == "r4"  # the batcher goes on
    assert errors == []


async def test_a_failing_send_gives_every_waiter_the_exception_and_the_next_call_still_goes():
    bank = FakeBank(hold=True)
    batcher = Batcher(bank.send, "test")
    first = batcher.submit_nowait(0)
    await settle()
    batch = [batcher.submit_nowait(i) for i in (1, 2, 3)]
    boom = ConnectionError("bank down")
    bank.failure = boom
    bank.release()
    for future in [first, *batch]:
        with pytest.raises(ConnectionError) as raised:
            await future
        assert raised.value is boom
    bank.failure = None
    assert await asyncio.wait_for(batcher.submit_nowait(4), 1) == "r4"


async def test_an_answer_that_does_not_answer_every_item_fails_every_waiter():
    async def short_send(items: list[int]) -> list[str]:
        return [f"r{item}" for item in items[1:]]  # one answer missing

    batcher = Batcher(short_send, "test")
    futures = [batcher.submit_nowait(i) for i in range(3)]
    for future in futures:
        with pytest.raises(RuntimeError, match="a batch answer has"):
            await asyncio.wait_for(future, 1)


async def test_each_future_gets_the_answer_at_its_items_index():
    seen: list[list[int]] = []

    async def send(items: list[int]) -> list[int]:
        seen.append(list(items))
        await asyncio.sleep(0)
        return [item * item for item in items]

    batcher = Batcher(send, "test")
    futures = {i: batcher.submit_nowait(i) for i in (5, 3, 9, 1, 4)}
    answers = {i: await future for i, future in futures.items()}
    assert answers == {5: 25, 3: 9, 9: 81, 1: 1, 4: 16}
    assert seen == [[5], [3, 9, 1, 4]]


async def test_a_lingering_item_waits_for_company_and_an_urgent_one_takes_it_along():
    bank = FakeBank()
    batcher = Batcher(bank.send, "test", linger_s=0.05)
    first, second = batcher.submit_nowait(1), batcher.submit_nowait(2)
    await settle()
    assert bank.calls == []  # lingering: nothing sent yet
    assert await asyncio.wait_for(asyncio.gather(first, second), 1) == ["r1", "r2"]
    assert bank.calls == [[1, 2]]  # one call for both, once the linger ran out

    lingering = batcher.submit_nowait(3)
    urgent = batcher.submit_nowait(4, urgent=True)
    await settle()
    assert bank.calls[1:] == [[3, 4]]  # the urgent item left at once, with the one that lingered
    assert await asyncio.wait_for(asyncio.gather(lingering, urgent), 1) == ["r3", "r4"]


# ---------------------------------------------------------------- take / settle --


async def test_take_hands_over_what_waits_but_the_withdrawn_and_the_batcher_sends_none_of_it():
    bank = FakeBank()
    batcher = Batcher(bank.send, "test", linger_s=0.01)
    waiting = [batcher.submit_nowait(i) for i in range(5)]
    waiting[1].cancel()
    taken = batcher.take()
    assert [item for item, _ in taken] == [0, 2, 3, 4]
    batcher.settle(taken, [f"t{item}" for item, _ in taken], started=0.0)
    assert [await future for _, future in taken] == ["t0", "t2", "t3", "t4"]
    await asyncio.sleep(0.05)  # past the linger: its timer was cancelled with nothing left
    assert batcher.take() == [] and bank.calls == []
    later = batcher.submit_nowait(9)  # a new item lingers afresh and leaves on its own
    assert await asyncio.wait_for(later, 5) == "r9"
    assert bank.calls == [[9]]


async def test_a_failure_settles_every_taken_waiter():
    batcher = Batcher(FakeBank().send, "test", linger_s=600.0)
    futures = [batcher.submit_nowait(i) for i in range(3)]
    batcher.settle(batcher.take(), RuntimeError("call failed"), started=0.0)
    for future in futures:
        with pytest.raises(RuntimeError, match="call failed"):
            await future


async def test_settle_with_the_wrong_number_of_results_fails_every_waiter():
    batcher = Batcher(FakeBank().send, "test", linger_s=600.0)
    futures = [batcher.submit_nowait(i) for i in range(3)]
    batcher.settle(batcher.take(), ["only one"], started=0.0)
    for future in futures:
        with pytest.raises(RuntimeError, match="1 results for 3 items"):
            await future
