"""WatchPayments on real processes, both engines: every state change of a user's payments,
in order, resumable from a cursor with nothing missed or repeated, never another user's,
bounded in number, and across the replicas of a tier."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from backend.api import strife_pb2 as pb
from tests.stack import eventually, pay_request, refusal, start_stack

pytestmark = pytest.mark.usefixtures("both_engines")

FROM_A = {"from_bank": "BankA", "from_account": "A-1001"}
FINAL = {pb.PaymentEvent.COMMITTED, pb.PaymentEvent.DECLINED, pb.PaymentEvent.ABORTED}


class Watch:
    """One WatchPayments stream, read into a list by a task."""

    def __init__(self, gw, metadata, cursor: str = "") -> None:
        self.call = gw.WatchPayments(pb.WatchPaymentsRequest(cursor=cursor), metadata=metadata)
        self.events: list[pb.PaymentEvent] = []
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for event in self.call:
            self.events.append(event)

    async def until(self, count: int, timeout_s: float = 30.0) -> list[pb.PaymentEvent]:
        async def enough():
            if self.task.done():
                self.task.result()  # a stream that ended early says why
            return len(self.events) >= count

        await eventually(enough, timeout_s=timeout_s, interval_s=0.05)
        return self.events

    def close(self) -> None:
        self.call.cancel()


def by_payment(events) -> dict[str, list[int]]:
    kinds: dict[str, list[int]] = {}
    for event in events:
        kinds.setdefault(event.payment_id, []).append(event.kind)
    return kinds


def position(cursor: str) -> tuple[int, int]:
    xid, event_id = cursor.split(".")
    return int(xid), int(event_id)


async def pay_many(gw, metadata, count: int, declined_every: int = 0) -> list[pb.Payment]:
    async def one(i: int) -> pb.Payment:
        amount = 10**9 if declined_every and i % declined_every == 0 else 100 + i
        return await gw.Pay(pay_request("BankB", "B-2001", amount, **FROM_A), metadata=metadata, timeout=30)

    paid: list[pb.Payment] = []
    for start in range(0, count, 20):  # 20 at a time
        paid += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 20))))
    return paid


async def test_a_subscriber_sees_every_change_of_200_payments_in_order_and_resumes_from_its_cursor(stack):
    gw, alice = await stack.login("alice")
    watch = Watch(gw, alice, cursor="0")
    paid = await pay_many(gw, alice, 200, declined_every=10)
    events = await watch.until(400)
    await asyncio.sleep(0.3)
    assert len(watch.events) == 400  # and nothing more
    watch.close()
    kinds = by_payment(events)
    assert set(kinds) == {p.payment_id for p in paid}
    for p in paid:
        final = pb.PaymentEvent.COMMITTED if p.status == pb.SUCCEEDED else pb.PaymentEvent.DECLINED
        assert kinds[p.payment_id] == [pb.PaymentEvent.ACCEPTED, final]
    declined = [e for e in events if e.kind == pb.PaymentEvent.DECLINED]
    assert len(declined) == 20 and all(e.payment.decline_reason == pb.Errors.INSUFFICIENT_FUNDS for e in declined)
    cursors = [position(e.cursor) for e in events]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    assert all(e.payment.username == "alice" and e.at_ms > 0 for e in events)

    # disconnect after 150, pay 30 more meanwhile, resume from the 150th cursor: the rest, once each
    first = Watch(gw, alice, cursor="0")
    await first.until(150)
    first.close()
    resume_at = first.events[149].cursor
    more = await pay_many(gw, alice, 30)
    resumed = Watch(gw, alice, cursor=resume_at)
    rest = await resumed.until(250 + 60)
    await asyncio.sleep(0.3)
    resumed.close()
    assert [e.cursor for e in first.events[:150] + rest] == [e.cursor for e in events] + [e.cursor for e in rest[250:]]
    assert len(rest) == 310 and set(by_payment(rest[250:])) == {p.payment_id for p in more}


async def test_another_users_payments_never_appear_and_from_now_skips_the_past(stack):
    gw, alice = await stack.login("alice")
    _, bob = await stack.login("bob")
    await pay_many(gw, alice, 5)  # before anyone watches: not in a stream "from now"
    bobs = Watch(gw, bob)
    alices = Watch(gw, alice)
    # a barrier: bob's own payment shows on his stream once it is subscribed
    barrier = None
    for _ in range(50):
        barrier = await gw.Pay(
            pay_request("BankA", "A-1002", 10, from_bank="BankB", from_account="B-2001"), metadata=bob, timeout=10
        )
        if len(bobs.events) >= 2:
            break
        await asyncio.sleep(0.2)
    await bobs.until(2)
    paid = await pay_many(gw, alice, 20)
    await alices.until(40)
    await asyncio.sleep(0.5)
    bobs.close()
    alices.close()
    assert {e.payment.username for e in bobs.events} == {"bob"}
    assert barrier is not None and barrier.payment_id in by_payment(bobs.events)
    assert {e.payment.username for e in alices.events} == {"alice"}
    assert set(by_payment(alices.events)) >= {p.payment_id for p in paid}
    assert len(by_payment(alices.events)) <= 20 + 0  # nothing from before she subscribed


async def test_streams_are_bounded_per_user_and_a_bad_cursor_is_refused(stack):
    gw, alice = await stack.login("alice")
    watches = [Watch(gw, alice, cursor="0") for _ in range(4)]
    await gw.Pay(pay_request("BankB", "B-2001", 100, **FROM_A), metadata=alice, timeout=10)
    for watch in watches:
        await watch.until(2)
    extra = gw.WatchPayments(pb.WatchPaymentsRequest(cursor="0"), metadata=alice)
    code, details = await refusal(extra.read())
    assert (code, details.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_STREAMS")
    for watch in watches:
        watch.close()
    for bad in ("x.1", "1.", "1.2.3", "9" * 70, "-1.5"):
        call = gw.WatchPayments(pb.WatchPaymentsRequest(cursor=bad), metadata=alice)
        code, details = await refusal(call.read())
        assert (code, details.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ("cursor",))
    call = gw.WatchPayments(pb.WatchPaymentsRequest(cursor="0"))  # no token
    code, details = await refusal(call.read())
    assert (code, details.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


async def test_a_stream_on_one_replica_sees_payments_made_on_another(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=2)
    try:
        gw1, alice1 = await stack.login("alice", replica="gw-1")
        gw2, alice2 = await stack.login("alice", replica="gw-2")
        watch = Watch(gw1, alice1, cursor="0")
        paid = await pay_many(gw2, alice2, 40)
        events = await watch.until(80)
        watch.close()
        assert set(by_payment(events)) == {p.payment_id for p in paid}
        cursors = [position(e.cursor) for e in events]
        assert cursors == sorted(cursors) and len(set(cursors)) == 80
    finally:
        await stack.close()
