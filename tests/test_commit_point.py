"""The gateway answers a payer at the commit point (COMMIT on disk), before the banks have
applied it, and keeps read-your-writes: the payer's next balance read, on this replica or on
another one, includes the payment. BankA applies commits late here (fault point
bank.slow_commits), so a balance read that did not wait for the commits would miss them."""

from __future__ import annotations

import grpc
import pytest

from backend.api import strife_pb2 as pb
from tests.stack import Stack, fault_env, pay_request, start_stack

ALICE_PAYS = {"from_bank": "BankA", "from_account": "A-1001"}


async def ledger_balance(stack: Stack, bank: str, account: str) -> int:
    """Straight from the bank (not stack.ledgers(), which waits for the gateway's commits)."""
    answer = await stack.bank(bank).ListAccounts(pb.ListAccountsRequest(), timeout=5)
    return next(a.balance_cents for a in answer.accounts if a.account_id == account)


def balance_of(answer: pb.BalanceResponse, bank: str, account: str) -> int:
    return next(a.balance_cents for a in answer.accounts if (a.account.bank, a.account.account_id) == (bank, account))


async def test_the_payer_is_answered_before_the_commit_lands_and_still_reads_its_payment(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, proc_env={"BankA": fault_env("bank.slow_commits")})
    try:
        gw, alice = await stack.login("alice")
        before = await ledger_balance(stack, "BankA", "A-1001")
        paid = await gw.Pay(pay_request("BankB", "B-2001", 2500, **ALICE_PAYS), metadata=alice, timeout=10)
        assert paid.status == pb.SUCCEEDED
        # answered while BankA still holds the money, its commit not applied yet
        assert await ledger_balance(stack, "BankA", "A-1001") == before
        balance = await gw.Balance(pb.BalanceRequest(), metadata=alice, timeout=10)
        assert balance_of(balance, "BankA", "A-1001") == before - 2500  # read-your-writes
        assert await ledger_balance(stack, "BankA", "A-1001") == before - 2500
    finally:
        await stack.close()


@pytest.mark.usefixtures("both_engines")
async def test_a_payment_answered_by_one_replica_is_in_the_balance_another_replica_reads(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=2, proc_env={"BankA": fault_env("bank.slow_commits")})
    try:
        gw1, alice1 = await stack.login("alice", replica="gw-1")
        gw2, alice2 = await stack.login("alice", replica="gw-2")
        before = await ledger_balance(stack, "BankA", "A-1001")
        paid = await gw1.Pay(pay_request("BankB", "B-2001", 1700, **ALICE_PAYS), metadata=alice1, timeout=10)
        assert paid.status == pb.SUCCEEDED
        assert await ledger_balance(stack, "BankA", "A-1001") == before
        balance = await gw2.Balance(pb.BalanceRequest(), metadata=alice2, timeout=10)
        assert balance_of(balance, "BankA", "A-1001") == before - 1700
    finally:
        await stack.close()


async def test_an_abort_is_answered_only_after_the_holds_are_released(tmp_path, certs_dir):
    """An abort is not answered at a commit point: when the client hears it, the payer's
    bank (which voted YES and held the money) has released the hold, so a retry never meets it."""
    stack = await start_stack(tmp_path, certs_dir)
    try:
        gw, alice = await stack.login("alice")
        for _ in range(5):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await gw.Pay(pay_request("BankB", "B-9999", 2500, **ALICE_PAYS), metadata=alice, timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND  # BankB: no such account, BankA: YES
            answer = await stack.bank("BankA").ListAccounts(pb.ListAccountsRequest(), timeout=5)
            assert answer.held_cents == 0
    finally:
        await stack.close()
