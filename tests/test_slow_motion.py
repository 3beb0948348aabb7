"""The demo switch: slow motion pauses between a payment's phases on a gateway started
with --demo, for the operator certificate only; no other gateway obeys it."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from app.app import SLOW_MOTION_MS, StrifeApp
from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common.events import Event, Phase
from tests.stack import eventually, pay_request, start_stack


def demo_stub(stack, role: str = "operator") -> pb_grpc.DemoStub:
    return pb_grpc.DemoStub(stack.channel(stack.cfg.gateway_address, role))


async def test_in_slow_motion_the_prepared_hold_is_visible_before_the_decision(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, demo=True)
    try:
        answer = await demo_stub(stack).SetSlowMotion(pb.SlowMotionRequest(pause_ms=600), timeout=5)
        assert answer.pause_ms == 600
        gw, alice = await stack.login("alice")

        def decided() -> int:
            return sum(r.get("event") == Event.TWOPC and r.get("phase") == Phase.DECISION for r in stack.records)

        # Twice: slow motion stays on after a payment (it was once reset by the first
        # acknowledgement written to disk, so only the first payment was slow).
        for n in range(2):
            request = pay_request("BankB", "B-2001", 250, from_bank="BankA", from_account="A-1001")
            paying = asyncio.ensure_future(gw.Pay(request, metadata=alice, timeout=10))

            async def held_undecided(before: int = n) -> bool:
                held = (await stack.ledgers("BankA"))["BankA"].held_cents
                return held == 250 and decided() == before

            # mid-payment: BankA holds the debit (it voted YES) and the gateway has not decided yet
            assert await eventually(held_undecided, timeout_s=5, interval_s=0.02), f"payment {n + 1}"
            paid = await paying
            assert paid.status == pb.SUCCEEDED
            await stack.seen(lambda r: r.get("event") == Event.TWOPC and r.get("phase") == Phase.ACKED)
        await demo_stub(stack).SetSlowMotion(pb.SlowMotionRequest(pause_ms=0), timeout=5)
        await stack.seen(lambda r: r.get("event") == Event.SLOW_MOTION and r.get("msg") == "off")
        assert [r.get("msg") for r in stack.log_lines("gateway") if r.get("event") == Event.SLOW_MOTION] == [
            "600 ms between phases",
            "off",
        ]
    finally:
        await stack.close()


async def test_slow_motion_is_refused_without_demo_mode_and_for_clients(stack):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await demo_stub(stack).SetSlowMotion(pb.SlowMotionRequest(pause_ms=500), timeout=5)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION and "--demo" in refused.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await demo_stub(stack, role="client").SetSlowMotion(pb.SlowMotionRequest(pause_ms=500), timeout=5)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await demo_stub(stack).SetSlowMotion(pb.SlowMotionRequest(pause_ms=60_000), timeout=5)
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert not [r for r in stack.log_lines("gateway") if r.get("event") == Event.SLOW_MOTION]


async def test_m_turns_slow_motion_on_and_off_and_the_status_bar_says_so():
    from app.widgets.status_bar import StatusBar
    from tests.snapshot_source import SnapshotSource

    source = SnapshotSource("idle")
    app = StrifeApp(source)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        slow = pilot.app.query_one(StatusBar).query_one("#status-slow")
        assert not slow.display
        await pilot.press("m")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert source.slow_motion_ms == SLOW_MOTION_MS
        assert slow.display and str(slow.render()) == f"SLOW MOTION {SLOW_MOTION_MS} ms"
        await pilot.press("m")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert source.slow_motion_ms == 0 and not slow.display
