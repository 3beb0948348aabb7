"""Register, log in, pay across banks, history, declines: through real processes."""

import grpc
import pytest

from backend.api import strife_pb2 as pb
from tests.stack import pay_request

pytestmark = pytest.mark.usefixtures("both_engines")  # each test on SQLite and on PostgreSQL


async def balances(gw, md) -> dict[tuple[str, str], int]:
    answer = await gw.Balance(pb.BalanceRequest(), metadata=md, timeout=5)
    return {(a.account.bank, a.account.account_id): a.balance_cents for a in answer.accounts}


async def test_register_login_pay_across_banks_and_history(stack):
    gw = stack.gateway()
    await gw.Register(
        pb.RegisterRequest(
            username="dave", password="dave-secret-1", account=pb.AccountRef(bank="BankA", account_id="A-1002")
        ),
        timeout=10,
    )
    gw, md = await stack.login("dave", "dave-secret-1")
    before_total = await stack.total_cents()
    assert await balances(gw, md) == {("BankA", "A-1002"): 50000}

    payment = await gw.Pay(pay_request("BankB", "B-2001", 1250), metadata=md, timeout=10)
    assert payment.status == pb.SUCCEEDED
    assert await balances(gw, md) == {("BankA", "A-1002"): 48750}
    bob, bob_md = await stack.login("bob")
    assert await balances(bob, bob_md) == {("BankB", "B-2001"): 75000 + 1250}
    assert await stack.total_cents() == before_total

    history = await gw.ListPayments(pb.ListPaymentsRequest(), metadata=md, timeout=5)
    assert [p.payment_id for p in history.payments] == [payment.payment_id]
    received = await bob.ListPayments(pb.ListPaymentsRequest(), metadata=bob_md, timeout=5)
    assert [p.payment_id for p in received.payments] == [payment.payment_id]
    assert (await gw.GetPayment(pb.GetPaymentRequest(payment_id=payment.payment_id), metadata=md)).amount_cents == 1250


async def test_insufficient_funds_is_declined_and_changes_nothing(stack):
    gw, md = await stack.login("bob")
    before = await stack.ledgers()
    payment = await gw.Pay(pay_request("BankA", "A-1001", 75001), metadata=md, timeout=10)
    assert payment.status == pb.DECLINED
    assert payment.reason == "insufficient funds"
    after = await stack.ledgers()
    assert after == before
    assert all(ledger.held_cents == 0 for ledger in after.values())


async def test_user_with_two_accounts_must_say_which_to_pay_from(stack):
    gw, md = await stack.login("alice")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.Pay(pay_request("BankB", "B-2001", 100), metadata=md, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    paid = await gw.Pay(pay_request("BankB", "B-2001", 100, from_bank="BankC", from_account="C-3002"), metadata=md)
    assert paid.status == pb.SUCCEEDED
    assert (await balances(gw, md))[("BankC", "C-3002")] == 20000 - 100
