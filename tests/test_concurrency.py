"""Many payments at once: holds make overdrafts impossible, and money is conserved."""

import asyncio

import grpc
import pytest

from backend.api import strife_pb2 as pb
from backend.common.states import LedgerState
from tests.stack import pay_request, start_stack

pytestmark = pytest.mark.usefixtures("both_engines")  # each test on SQLite and on PostgreSQL


async def register(stack, username, bank, account):
    await stack.gateway().Register(
        pb.RegisterRequest(
            username=username, password=f"{username}-secret-1", account=pb.AccountRef(bank=bank, account_id=account)
        ),
        timeout=10,
    )
    return await stack.login(username, f"{username}-secret-1")


async def test_fifty_concurrent_payments_never_overdraw(tmp_path, certs_dir):
    # A generous 2PC deadline: on a slow machine a timeout would be a refusal, not a bug.
    stack = await start_stack(tmp_path, certs_dir, twopc_timeout_s=10.0)
    try:
        gw, md = await register(stack, "dave", "BankA", "A-1002")  # 50000 cents
        before = await stack.balances()
        amount, count = 2000, 50  # 100000 cents asked of 50000
        # half cross-bank (two participants), half within BankA (one participant, two legs)
        payees = [("BankB", "B-2001"), ("BankA", "A-1003")]
        requests = [pay_request(*payees[i % 2], amount) for i in range(count)]
        # several sessions, as from several devices of the same user
        sessions = [await stack.login("dave", "dave-secret-1") for _ in range(4)]

        results = await asyncio.gather(
            *(
                sessions[i % len(sessions)][0].Pay(r, metadata=sessions[i % len(sessions)][1], timeout=30)
                for i, r in enumerate(requests)
            )
        )
        statuses = [p.status for p in results]
        assert set(statuses) <= {pb.SUCCEEDED, pb.DECLINED}, statuses
        assert all(p.reason == "insufficient funds" for p in results if p.status == pb.DECLINED)
        succeeded = [(r, p) for r, p in zip(requests, results, strict=True) if p.status == pb.SUCCEEDED]
        # holds are taken at prepare time, so exactly the balance's worth gets through
        assert len(succeeded) == 50000 // amount

        after = await stack.balances()
        assert after[("BankA", "A-1002")] == before[("BankA", "A-1002")] - amount * len(succeeded) == 0
        for payee in payees:
            got = sum(amount for r, _ in succeeded if (r.to.bank, r.to.account_id) == payee)
            assert after[payee] == before[payee] + got
        assert all(v >= 0 for v in after.values())
        assert sum(after.values()) == sum(before.values())
        states = await stack.assert_atomic()
        committed = {t for t, s in states.items() if LedgerState.COMMITTED in s.values()}
        assert committed == {p.payment_id for _, p in succeeded}

        # the account is empty now: one more cent is declined, and changes nothing
        last = await gw.Pay(pay_request("BankB", "B-2001", 1), metadata=md, timeout=10)
        assert last.status == pb.DECLINED
        assert await stack.balances() == after
    finally:
        await stack.close()


async def test_concurrent_payments_in_every_direction_conserve_money(tmp_path, certs_dir):
    """Payers at every bank paying each other at once: no deadlock, no lost cent."""
    stack = await start_stack(tmp_path, certs_dir, twopc_timeout_s=10.0)
    try:
        alice, alice_md = await stack.login("alice")
        bob, bob_md = await stack.login("bob")
        carol, carol_md = await stack.login("carol")
        before = await stack.balances()
        plans = [
            (alice, alice_md, pay_request("BankB", "B-2001", 1700, from_bank="BankA", from_account="A-1001")),
            (alice, alice_md, pay_request("BankC", "C-3001", 900, from_bank="BankC", from_account="C-3002")),
            (bob, bob_md, pay_request("BankA", "A-1001", 1300)),
            (bob, bob_md, pay_request("BankC", "C-3002", 1100)),
            (carol, carol_md, pay_request("BankA", "A-1001", 700)),
            (carol, carol_md, pay_request("BankB", "B-2001", 2900)),
        ]
        calls = [
            gw.Pay(r, metadata=md, timeout=30)
            for _ in range(8)
            for gw, md, r in [(g, m, _fresh(r)) for g, m, r in plans]
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert not errors, errors
        assert all(p.status == pb.SUCCEEDED for p in results)

        expected = dict(before)
        for p in results:
            expected[(getattr(p, "from").bank, getattr(p, "from").account_id)] -= p.amount_cents
            expected[(p.to.bank, p.to.account_id)] += p.amount_cents
        assert await stack.balances() == expected
        await stack.assert_atomic()
    finally:
        await stack.close()


def _fresh(request: pb.PayRequest) -> pb.PayRequest:
    return pay_request(
        request.to.bank,
        request.to.account_id,
        request.amount_cents,
        from_bank=getattr(request, "from").bank,
        from_account=getattr(request, "from").account_id,
    )
