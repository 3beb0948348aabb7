"""Only documented status codes reach a client, on every path a payment can take
when no bank can answer, and for an exception no handler expected."""

from __future__ import annotations

import grpc
import pytest

from backend.api import strife_pb2 as pb
from backend.common.errors import CLIENT_CODES
from backend.common.events import Event, Phase
from backend.common.states import LedgerState
from tests.stack import eventually, pay_request, start_stack

pytestmark = pytest.mark.usefixtures("both_engines")  # each test on SQLite and on PostgreSQL


@pytest.fixture
async def stack(tmp_path, certs_dir):
    """A stack whose gateway has no circuit breakers: these tests are about the 2PC path to a
    bank that does not answer (an open breaker's fast refusal is in tests/test_breakers.py)."""
    running = await start_stack(tmp_path, certs_dir, gateway_args=["--no-breakers"])
    try:
        yield running
    finally:
        await running.close()


DOCUMENTED = CLIENT_CODES - {grpc.StatusCode.INTERNAL}


async def code_of(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        assert exc.code() in DOCUMENTED, f"{exc.code().name}: {exc.details()}"
        return exc.code()
    return grpc.StatusCode.OK


async def began(stack) -> set[str]:
    """The transactions the gateway has begun so far (its log lines arrive a few ms late)."""
    await stack.seen(lambda r: r.get("event") == Event.TWOPC and r.get("phase") == Phase.DECISION)
    await stack.logs_caught_up()
    return set(stack.begun())


async def aborted_everywhere(stack, txns: set[str], banks: set[str]) -> dict[str, dict[str, str]]:
    """Once every bank of `banks` holds an ABORTED record for each of `txns` (the decision
    reached them although they never voted), the txn states."""

    async def check():
        states = await stack.txn_states(*banks)
        done = all(states.get(txn, {}).get(bank) == LedgerState.ABORTED for txn in txns for bank in banks)
        return states if done else None

    return await eventually(check, timeout_s=15)


async def pay_or_none(gw, request, metadata):
    """The payment, or None while it is refused UNAVAILABLE (a bank back a moment ago)."""
    try:
        return await gw.Pay(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return None


def no_internal_errors(stack) -> None:
    lines = stack.log_lines("gateway")
    assert not [r for r in lines if r.get("event") == Event.INTERNAL_ERROR], "the gateway hit an unexpected exception"
    codes = {r["code"] for r in lines if r.get("event") == Event.RPC}
    assert codes <= {c.name for c in DOCUMENTED} | {"CANCELLED"}, codes


async def test_no_bank_answers_is_unavailable_and_the_abort_reaches_them_later(stack):
    gw, alice = await stack.login("alice")
    before = await stack.balances()
    await stack.sup.kill("BankA")
    await stack.sup.kill("BankB")
    request = pay_request("BankB", "B-2001", 500, from_bank="BankA", from_account="A-1001")
    assert await code_of(gw.Pay(request, metadata=alice, timeout=10)) is grpc.StatusCode.UNAVAILABLE
    unanswered = await began(stack)
    assert len(unanswered) == 1
    # the first retry right after the banks return, while the gateway's channels may still
    # count them offline: a documented code or success, never UNKNOWN
    await stack.sup.restart("BankA")
    await stack.sup.restart("BankB")
    first_retry = await code_of(gw.Pay(request, metadata=alice, timeout=10))
    assert first_retry in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE)
    await aborted_everywhere(stack, unanswered, {"BankA", "BankB"})
    # the same key then pays exactly once (once the banks' breakers let payments through again)
    paid = await eventually(lambda: pay_or_none(gw, request, alice), timeout_s=15)
    assert paid.status == pb.SUCCEEDED
    after = await stack.balances()
    assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] - 500
    assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] + 500
    no_internal_errors(stack)


async def test_same_bank_payment_while_that_bank_is_down_is_unavailable(stack):
    gw, alice = await stack.login("alice")
    before = await stack.balances()
    await stack.sup.kill("BankA")
    request = pay_request("BankA", "A-1002", 300, from_bank="BankA", from_account="A-1001")
    assert await code_of(gw.Pay(request, metadata=alice, timeout=10)) is grpc.StatusCode.UNAVAILABLE
    unanswered = await began(stack)
    await stack.sup.restart("BankA")
    await aborted_everywhere(stack, unanswered, {"BankA"})
    paid = await eventually(lambda: pay_or_none(gw, request, alice), timeout_s=15)
    assert paid.status == pb.SUCCEEDED
    assert (await stack.balances())[("BankA", "A-1001")] == before[("BankA", "A-1001")] - 300
    no_internal_errors(stack)


async def test_a_short_client_deadline_with_a_frozen_bank_charges_once(stack):
    """The client gives up first (DEADLINE_EXCEEDED); the payment ends without it, and the
    same key, sent again once the bank is back, pays exactly once."""
    gw, alice = await stack.login("alice")
    before = await stack.balances()
    request = pay_request("BankB", "B-2001", 100, from_bank="BankA", from_account="A-1001")
    await stack.sup.freeze("BankB")
    try:
        assert await code_of(gw.Pay(request, metadata=alice, timeout=0.3)) is grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await stack.sup.thaw("BankB")
    paid = await eventually(lambda: pay_or_none(gw, request, alice), timeout_s=15)
    assert paid.status == pb.SUCCEEDED
    await eventually(stack.settled, timeout_s=15)
    assert (await stack.balances())[("BankB", "B-2001")] == before[("BankB", "B-2001")] + 100
    no_internal_errors(stack)
