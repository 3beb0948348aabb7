"""Every refusal says why in its google.rpc status details (ErrorInfo reason, RetryInfo,
BadRequest field), read here from the details, never from the message. Real processes."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common.events import Phase
from backend.gateway import login_limiter
from tests.stack import pay_request, refusal, start_stack

FROM_A = {"from_bank": "BankA", "from_account": "A-1001"}


@pytest.fixture
async def demo_stack(tmp_path, certs_dir):
    running = await start_stack(tmp_path, certs_dir, demo=True)
    try:
        yield running
    finally:
        await running.close()


async def test_invalid_input_names_the_field(stack):
    gw, alice = await stack.login("alice")
    cases = [
        (pay_request("Bank A!", "B-2001", 100, **FROM_A), "to.bank"),
        (pay_request("BankB", "B 2001", 100, **FROM_A), "to.account_id"),
        (pay_request("BankB", "B-2001", 0, **FROM_A), "amount_cents"),
        (pay_request("BankB", "B-2001", 100, from_bank="BankA", from_account="A 1001"), "from.account_id"),
        (pay_request("BankA", "A-1001", 100, **FROM_A), "to"),
        (pay_request("BankB", "B-2001", 100), "from"),  # alice holds two accounts: which one?
    ]
    for request, field in cases:
        code, details = await refusal(gw.Pay(request, metadata=alice, timeout=10))
        assert (code, details.reason, details.fields) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", (field,))
        assert details.domain == "strife.v1" and details.retry_after_s is None
    request = pb.PayRequest(idempotency_key="", to=pb.AccountRef(bank="BankB", account_id="B-2001"), amount_cents=5)
    code, details = await refusal(gw.Pay(request, metadata=alice, timeout=10))
    assert details.fields == ("idempotency_key",)
    code, details = await refusal(gw.Login(pb.LoginRequest(username="A", password="x" * 10), timeout=10))
    assert (details.reason, details.fields) == ("INVALID_FIELD", ("username",))


async def test_authentication_and_authorization_reasons(stack):
    gw, alice = await stack.login("alice")
    _, details = await refusal(gw.Balance(pb.BalanceRequest(), timeout=5))
    assert details.reason == "TOKEN_MISSING"
    _, details = await refusal(gw.Balance(pb.BalanceRequest(), metadata=(("authorization", "Bearer nope"),), timeout=5))
    assert details.reason == "TOKEN_INVALID"
    code, details = await refusal(gw.Login(pb.LoginRequest(username="alice", password="not-her-password"), timeout=10))
    assert (code, details.reason) == (grpc.StatusCode.UNAUTHENTICATED, "WRONG_CREDENTIALS")
    bobs = pay_request("BankA", "A-1002", 100, from_bank="BankB", from_account="B-2001")
    code, details = await refusal(gw.Pay(bobs, metadata=alice, timeout=10))
    assert (code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_YOUR_ACCOUNT")
    coordinator = pb_grpc.CoordinatorStub(stack.channel(stack.cfg.gateway_address, "client"))
    code, details = await refusal(coordinator.ResolveTransaction(pb.ResolveRequest(txn_id="t1"), timeout=5))
    assert (code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")


async def test_not_found_already_exists_and_reused_key_reasons(stack):
    gw, alice = await stack.login("alice")
    _, details = await refusal(gw.Pay(pay_request("BankZ", "Z-1", 100, **FROM_A), metadata=alice, timeout=10))
    assert details.reason == "UNKNOWN_BANK"
    _, details = await refusal(gw.Pay(pay_request("BankB", "B-9999", 100, **FROM_A), metadata=alice, timeout=10))
    assert details.reason == "UNKNOWN_ACCOUNT"
    _, details = await refusal(gw.GetPayment(pb.GetPaymentRequest(payment_id=uuid.uuid4().hex), metadata=alice))
    assert details.reason == "UNKNOWN_PAYMENT"
    taken = pb.RegisterRequest(
        username="alice", password="another-password", account=pb.AccountRef(bank="BankA", account_id="A-1001")
    )
    code, details = await refusal(gw.Register(taken, timeout=15))
    assert (code, details.reason) == (grpc.StatusCode.ALREADY_EXISTS, "USERNAME_TAKEN")
    paid = await gw.Pay(pay_request("BankB", "B-2001", 100, key="reused", **FROM_A), metadata=alice, timeout=10)
    assert paid.status == pb.SUCCEEDED and paid.decline_reason == pb.Errors.ERROR_REASON_UNSPECIFIED
    code, details = await refusal(
        gw.Pay(pay_request("BankB", "B-2001", 200, key="reused", **FROM_A), metadata=alice, timeout=10)
    )
    assert (code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")
    declined = await gw.Pay(pay_request("BankB", "B-2001", 10**9, **FROM_A), metadata=alice, timeout=10)
    assert declined.status == pb.DECLINED and declined.decline_reason == pb.Errors.INSUFFICIENT_FUNDS
    demo = pb_grpc.DemoStub(stack.channel(stack.cfg.gateway_address, "operator"))
    code, details = await refusal(demo.SetSlowMotion(pb.SlowMotionRequest(pause_ms=100), timeout=5))
    assert (code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "DEMO_DISABLED")


async def test_a_key_in_flight_says_when_to_retry(demo_stack):
    stack = demo_stack
    demo = pb_grpc.DemoStub(stack.channel(stack.cfg.gateway_address, "operator"))
    await demo.SetSlowMotion(pb.SlowMotionRequest(pause_ms=800), timeout=5)
    gw, alice = await stack.login("alice")
    request = pay_request("BankB", "B-2001", 100, key="slow", **FROM_A)
    first = asyncio.ensure_future(gw.Pay(request, metadata=alice, timeout=15))
    await stack.seen(lambda r: r.get("phase") == Phase.BEGIN)
    code, details = await refusal(gw.Pay(request, metadata=alice, timeout=10))
    assert (code, details.reason) == (grpc.StatusCode.ABORTED, "IDEMPOTENCY_KEY_IN_FLIGHT")
    assert details.retry_after_s is not None and 0 < details.retry_after_s <= 1
    assert (await first).status == pb.SUCCEEDED


async def test_a_locked_login_says_when_the_lockout_lifts(stack):
    gw = stack.gateway()
    for _ in range(login_limiter.MAX_FAILURES):
        await refusal(gw.Login(pb.LoginRequest(username="bob", password="wrong-password"), timeout=10))
    code, details = await refusal(gw.Login(pb.LoginRequest(username="bob", password="bob-demo-pw"), timeout=10))
    assert (code, details.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_LOCKED")
    assert details.retry_after_s is not None
    assert login_limiter.LOCKOUT_S - 5 < details.retry_after_s <= login_limiter.LOCKOUT_S
