"""The gateway's circuit breaker per bank, on real processes: a dead bank's payments fail
in milliseconds with BREAKER_OPEN and send nothing, the half-open probe closes it when
the bank is back, and a bank that stays down is probed rarely, not hammered."""

from __future__ import annotations

import asyncio
import time

import grpc

from backend.api import strife_pb2 as pb
from backend.common.events import Event, Phase
from tests.stack import Stack, eventually, fault_env, pay_request, refusal, start_stack

TO_B = {"from_bank": "BankA", "from_account": "A-1001"}


def breaker_states(stack: Stack, bank: str) -> list[str]:
    return [r["state"] for r in stack.log_lines() if r.get("event") == Event.BREAKER and r.get("bank") == bank]


def prepares_tried(stack: Stack, bank: str) -> int:
    """Prepares the gateway sent to `bank` that got no vote (the bank is down)."""
    return sum(
        1
        for r in stack.log_lines("gateway")
        if r.get("phase") == Phase.VOTE and r.get("bank") == bank and r.get("vote") == "NONE"
    )


async def balance_at_a(stack: Stack) -> int:
    """A-1001's balance, asked of BankA alone (BankB is down)."""
    accounts = (await stack.ledgers("BankA"))["BankA"].accounts
    return next(a.balance_cents for a in accounts if a.account_id == "A-1001")


def prepare_calls(stack: Stack, bank: str) -> int:
    return sum(1 for r in stack.log_lines(bank) if r.get("method", "").endswith("/PrepareBatch"))


async def test_a_dead_bank_trips_its_breaker_payments_fail_fast_and_the_probe_closes_it(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateway_args=["--breaker-cooldown", "1"])
    try:
        gw, alice = await stack.login("alice")
        await stack.sup.kill("BankB")

        async def opened() -> bool:
            try:
                await gw.Pay(pay_request("BankB", "B-2001", 100, **TO_B), metadata=alice, timeout=10)
            except grpc.aio.AioRpcError:
                pass
            return "open" in breaker_states(stack, "BankB")

        await eventually(opened, timeout_s=15, interval_s=0.05)
        await stack.logs_caught_up()
        calls_at_a = prepare_calls(stack, "BankA")
        before = await balance_at_a(stack)
        for i in range(20):
            started = time.perf_counter()
            code, details = await refusal(
                gw.Pay(pay_request("BankB", "B-2001", 100, key=f"open-{i}", **TO_B), metadata=alice, timeout=10)
            )
            elapsed_s = time.perf_counter() - started
            if details.reason != "BREAKER_OPEN":  # the cool-down ended: this one was the probe
                assert details.reason == "BANK_UNAVAILABLE"
                continue
            assert code == grpc.StatusCode.UNAVAILABLE and details.domain == "strife.v1"
            assert details.retry_after_s is not None and 0 < details.retry_after_s <= 1.2 * 2
            assert elapsed_s < 1.0  # refused at the gateway, not after a 2PC timeout
        # a payment that does not touch BankB is not refused
        own = await gw.Pay(
            pay_request("BankA", "A-1002", 50, from_bank="BankA", from_account="A-1001"), metadata=alice, timeout=10
        )
        assert own.status == pb.SUCCEEDED
        await stack.logs_caught_up()
        # the refused ones sent no Prepare, so BankA saw only the one of the payment to A-1002 and
        # any probes (a probe of BankB goes to BankA as well)
        probes = prepares_tried(stack, "BankB")
        assert prepare_calls(stack, "BankA") - calls_at_a <= 1 + probes
        assert (await stack.ledgers("BankA"))["BankA"].held_cents == 0  # no hold was made for them
        assert await balance_at_a(stack) == before - 50

        await stack.sup.restart("BankB")

        async def paid():
            try:
                return await gw.Pay(
                    pay_request("BankB", "B-2001", 100, key="after", **TO_B), metadata=alice, timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                return None

        answer = await eventually(paid, timeout_s=20, interval_s=0.1)
        assert answer.status == pb.SUCCEEDED
        await stack.seen(lambda r: r.get("event") == Event.BREAKER and r.get("state") == "closed")
        assert breaker_states(stack, "BankB")[-2:] == ["half_open", "closed"]
    finally:
        await stack.close()


async def test_a_bank_that_stays_down_is_probed_rarely_not_hammered(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateway_args=["--breaker-cooldown", "0.5"])
    try:
        gw, alice = await stack.login("alice")
        await stack.sup.kill("BankB")
        sent = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 6.0
        while loop.time() < end:  # a client paying BankB as fast as it is answered, for 6 s
            try:
                await gw.Pay(pay_request("BankB", "B-2001", 100, **TO_B), metadata=alice, timeout=10)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
            sent += 1
            await asyncio.sleep(0.01)
        await stack.logs_caught_up()
        tried = prepares_tried(stack, "BankB")
        # the failures before it opened (at most --breaker-failures, 5) and one probe per
        # cool-down, doubled after each failed one: 0.5 + 1 + 2 s fit in 6 s
        assert sent > 100 and tried <= 5 + 4, (sent, tried)
        assert breaker_states(stack, "BankB").count("half_open") <= 4
    finally:
        await stack.close()


async def test_without_breakers_every_payment_tries_the_dead_bank(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateway_args=["--no-breakers"])
    try:
        gw, alice = await stack.login("alice")
        await stack.sup.kill("BankB")
        for _ in range(8):
            code, details = await refusal(
                gw.Pay(pay_request("BankB", "B-2001", 100, **TO_B), metadata=alice, timeout=10)
            )
            assert code == grpc.StatusCode.UNAVAILABLE and details.reason == "BANK_UNAVAILABLE"
        await stack.logs_caught_up()
        assert prepares_tried(stack, "BankB") == 8
        assert not breaker_states(stack, "BankB")
    finally:
        await stack.close()


async def test_a_bank_slow_to_start_is_not_reported_failing_once_the_stack_is_up(tmp_path, certs_dir):
    """The supervisor starts the gateway only once its banks serve. A gateway started beside a
    bank that was not listening yet opened that bank's breaker at its first health check, and
    a payment made right after the stack came up was refused ("BankA is failing")."""
    stack = await start_stack(tmp_path, certs_dir, proc_env={"BankA": fault_env("bank.slow_start")})
    try:
        gw, alice = await stack.login("alice")
        paid = await gw.Pay(pay_request("BankB", "B-2001", 650, **TO_B), metadata=alice, timeout=10)
        assert paid.status == pb.SUCCEEDED
        await stack.logs_caught_up()
        assert breaker_states(stack, "BankA") == []
    finally:
        await stack.close()
