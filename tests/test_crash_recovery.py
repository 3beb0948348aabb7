"""Crashes and freezes during two-phase commit, through real processes and fault points.

After every scenario: each transaction ends COMMITTED at both of its banks or at
neither, nothing stays PREPARED, no hold is left, total money is unchanged, and
what a client was told SUCCEEDED is committed at both banks."""

import asyncio
import random

import grpc
import pytest

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common.events import Phase, Vote
from backend.common.states import Decision, LedgerState, ProcessState
from tests.stack import eventually, fault_env, pay_request, start_stack

pytestmark = pytest.mark.usefixtures("both_engines")  # each test on SQLite and on PostgreSQL

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED)


async def exited(stack, name: str) -> int:
    """Wait until process `name` exited on its own; return its exit code."""
    await eventually(lambda: _async(stack.sup.procs[name].state == ProcessState.CRASHED), timeout_s=10)
    return stack.sup.procs[name].exit_code


async def _async(value):
    return value


async def pay_until_final(gw, md, request, deadline_s=30.0):
    """Pay, retrying retryable refusals with the same key as the client library does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        try:
            return await gw.Pay(request, metadata=md, timeout=10)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE or loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def txn_of(stack) -> str:
    """The one transaction the gateway began (asserted)."""
    begun = await stack.seen(lambda r: r.get("process") == "gateway" and r.get("phase") == Phase.BEGIN)
    assert len(begun) == 1, begun
    return begun[0]["txn"]


async def test_bank_killed_while_payments_flow(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir)
    try:
        sessions = {u: await stack.login(u) for u in ("alice", "bob", "carol")}
        before = await stack.balances()
        flows = [  # (payer, from, to): every pair of banks, most of them through BankB
            ("alice", ("BankA", "A-1001"), ("BankB", "B-2001")),
            ("bob", ("BankB", "B-2001"), ("BankC", "C-3001")),
            ("bob", ("BankB", "B-2001"), ("BankA", "A-1001")),
            ("carol", ("BankC", "C-3001"), ("BankB", "B-2001")),
            ("carol", ("BankC", "C-3001"), ("BankA", "A-1002")),
            ("alice", ("BankC", "C-3002"), ("BankA", "A-1003")),
        ]
        done: list[tuple[pb.PayRequest, pb.Payment]] = []
        stop = asyncio.Event()
        rng = random.Random(7)

        async def payer(user, source, dest):
            gw, md = sessions[user]
            while not stop.is_set():
                request = pay_request(*dest, rng.randint(1, 300), from_bank=source[0], from_account=source[1])
                done.append((request, await pay_until_final(gw, md, request)))

        workers = [asyncio.ensure_future(payer(*f)) for f in flows]
        await eventually(lambda: _async(len(done) >= 20), timeout_s=20, interval_s=0.02)
        await stack.sup.kill("BankB")
        killed_at = len(done)
        await asyncio.sleep(0.7)  # payments through BankB fail and are retried meanwhile
        await stack.sup.restart("BankB")
        await eventually(lambda: _async(len(done) >= killed_at + 30), timeout_s=30, interval_s=0.05)
        stop.set()
        await asyncio.gather(*workers)

        # the kill really hit payments in flight
        refused = [r for r in stack.log_lines("gateway") if r.get("phase") == Phase.VOTE and r.get("vote") == Vote.NONE]
        assert refused, "no payment saw BankB down: the kill hit nothing"

        await eventually(stack.settled, timeout_s=20)
        states = await stack.assert_atomic()
        # a flow that avoids BankB may drain its payer while BankB is down: declines are fine
        assert all(
            p.status == pb.SUCCEEDED or (p.status == pb.DECLINED and p.reason == "insufficient funds") for _, p in done
        ), [p for _, p in done if p.status != pb.SUCCEEDED]
        succeeded = [(r, p) for r, p in done if p.status == pb.SUCCEEDED]
        assert len(succeeded) >= 40
        for request, payment in succeeded:
            banks = {getattr(request, "from").bank, request.to.bank}
            assert {b: states[payment.payment_id].get(b) for b in banks} == {b: LedgerState.COMMITTED for b in banks}
        # money moved exactly as the clients were told, once per key
        expected = dict(before)
        for request, payment in succeeded:
            expected[(getattr(request, "from").bank, getattr(request, "from").account_id)] -= payment.amount_cents
            expected[(request.to.bank, request.to.account_id)] += payment.amount_cents
        assert await stack.balances() == expected
        assert sum(expected.values()) == sum(before.values())
        committed = {t for t, s in states.items() if LedgerState.COMMITTED in s.values()}
        assert committed == {p.payment_id for _, p in succeeded}
    finally:
        await stack.close()


async def test_gateway_crash_after_recording_commit(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, proc_env={"gateway": fault_env("gateway.crash_after_commit_record")})
    try:
        gw, md = await stack.login("alice")
        before = await stack.balances()
        request = pay_request("BankB", "B-2001", 1500, from_bank="BankA", from_account="A-1001")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.Pay(request, metadata=md, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await exited(stack, "gateway") == 77
        txn = await txn_of(stack)

        # both banks voted YES and now wait: they never decide alone
        states = await stack.txn_states()
        assert states[txn] == {"BankA": LedgerState.PREPARED, "BankB": LedgerState.PREPARED}
        assert (await stack.ledgers("BankA"))["BankA"].held_cents == 1500

        async def asked_in_vain():
            return any(r.get("phase") == Phase.RESOLVE_FAILED and r.get("txn") == txn for r in stack.records)

        await eventually(asked_in_vain, timeout_s=10)
        assert (await stack.txn_states())[txn] == {"BankA": LedgerState.PREPARED, "BankB": LedgerState.PREPARED}

        stack.set_env("gateway", {})
        await stack.sup.restart("gateway")
        await eventually(stack.settled, timeout_s=15)
        states = await stack.assert_atomic()
        assert states[txn] == {"BankA": LedgerState.COMMITTED, "BankB": LedgerState.COMMITTED}
        after = await stack.balances()
        assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] - 1500
        assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] + 1500

        # the client, who saw the connection drop, retries with its key: the recorded success
        paid = await pay_until_final(gw, md, request)
        assert paid.status == pb.SUCCEEDED and paid.payment_id == txn
        assert await stack.balances() == after
    finally:
        await stack.close()


async def test_gateway_crash_after_first_commit(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, proc_env={"gateway": fault_env("gateway.crash_after_first_commit")})
    try:
        gw, md = await stack.login("bob")
        before = await stack.balances()
        request = pay_request("BankC", "C-3001", 2200)
        # The payer is answered at the commit point, before the commits go out: it has its
        # success although the gateway dies after the first bank's acknowledgement.
        answered = await gw.Pay(request, metadata=md, timeout=10)
        assert answered.status == pb.SUCCEEDED
        assert await exited(stack, "gateway") == 77
        txn = await txn_of(stack)
        assert txn == answered.payment_id
        assert LedgerState.COMMITTED in (await stack.txn_states())[txn].values()  # one bank heard it

        stack.set_env("gateway", {})
        await stack.sup.restart("gateway")
        await eventually(stack.settled, timeout_s=15)
        states = await stack.assert_atomic()
        assert states[txn] == {"BankB": LedgerState.COMMITTED, "BankC": LedgerState.COMMITTED}
        after = await stack.balances()
        assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] - 2200
        assert after[("BankC", "C-3001")] == before[("BankC", "C-3001")] + 2200
        paid = await pay_until_final(gw, md, request)
        assert paid.status == pb.SUCCEEDED and paid.payment_id == txn
        assert await stack.balances() == after
    finally:
        await stack.close()


async def test_bank_crash_after_voting_yes(tmp_path, certs_dir):
    # BankB holds the payer's account: it writes the hold and its YES, then dies.
    stack = await start_stack(tmp_path, certs_dir, proc_env={"BankB": fault_env("bank.crash_after_yes")})
    try:
        gw, md = await stack.login("bob")
        before = await stack.balances()
        request = pay_request("BankA", "A-1001", 3000)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.Pay(request, metadata=md, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await exited(stack, "BankB") == 77
        txn = await txn_of(stack)
        assert (await stack.txn_states("BankA", "BankC"))[txn] == {"BankA": LedgerState.ABORTED}

        stack.set_env("BankB", {})
        await stack.sup.restart("BankB")
        await eventually(stack.settled, timeout_s=15)
        states = await stack.assert_atomic()
        assert states[txn] == {
            "BankA": LedgerState.ABORTED,
            "BankB": LedgerState.ABORTED,
        }  # its durable YES, then aborted
        assert await stack.balances() == before

        # the refused payment can be made with the same key now, once
        paid = await pay_until_final(gw, md, request)
        assert paid.status == pb.SUCCEEDED and paid.payment_id != txn
        after = await stack.balances()
        assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] - 3000
        assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] + 3000
        await stack.assert_atomic()
    finally:
        await stack.close()


async def test_frozen_bank_past_the_2pc_timeout(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir)
    try:
        gw, md = await stack.login("bob")
        before = await stack.balances()
        request = pay_request("BankA", "A-1001", 4100)  # from BankB, which we freeze
        await stack.sup.freeze("BankB")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.Pay(request, metadata=md, timeout=15)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "BankB timed out" in err.value.details()
        txn = await txn_of(stack)
        decisions = await stack.seen(lambda r: r.get("phase") == Phase.DECISION and r.get("txn") == txn)
        assert [r["decision"] for r in decisions] == [Decision.ABORT]
        assert (await stack.ledgers("BankA"))["BankA"].held_cents == 0

        await stack.sup.thaw("BankB")
        await eventually(stack.settled, timeout_s=15)
        states = await stack.assert_atomic()
        assert LedgerState.COMMITTED not in states.get(txn, {}).values()
        assert await stack.balances() == before

        paid = await pay_until_final(gw, md, request)
        assert paid.status == pb.SUCCEEDED
        assert (await stack.balances())[("BankB", "B-2001")] == before[("BankB", "B-2001")] - 4100
        await stack.assert_atomic()
    finally:
        await stack.close()


async def test_presumed_abort_while_in_flight_is_final(tmp_path, certs_dir):
    """A bank asks about a transaction still collecting votes: the coordinator records
    ABORT then; the YES votes that arrive later cannot turn it into a commit."""
    stack = await start_stack(tmp_path, certs_dir, twopc_timeout_s=5.0)
    try:
        gw, md = await stack.login("alice")
        before = await stack.balances()
        request = pay_request("BankB", "B-2001", 800, from_bank="BankA", from_account="A-1001")
        await stack.sup.freeze("BankB")
        first = asyncio.ensure_future(gw.Pay(request, metadata=md, timeout=15))

        async def bank_a_voted():
            return any(r.get("process") == "BankA" and r.get("phase") == Phase.VOTE for r in stack.records)

        await eventually(bank_a_voted, timeout_s=5, interval_s=0.02)
        txn = await txn_of(stack)
        coordinator = pb_grpc.CoordinatorStub(stack.channel(stack.cfg.gateway_address, "bank"))
        answer = await coordinator.ResolveTransaction(pb.ResolveRequest(txn_id=txn), timeout=5)
        assert answer.decision == pb.ABORT
        await stack.sup.thaw("BankB")  # BankB now votes YES, too late

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await first
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        await stack.seen(lambda r: r.get("phase") == Phase.DECISION and r.get("txn") == txn)
        await stack.logs_caught_up()
        decisions = [
            r["decision"]
            for r in stack.log_lines("gateway")
            if r.get("phase") in (Phase.DECISION, Phase.RESOLVED) and r.get("txn") == txn
        ]
        assert set(decisions) == {Decision.ABORT}, decisions
        await eventually(stack.settled, timeout_s=15)
        states = await stack.assert_atomic()
        assert LedgerState.COMMITTED not in states[txn].values()
        assert await stack.balances() == before
        again = await coordinator.ResolveTransaction(pb.ResolveRequest(txn_id=txn), timeout=5)
        assert again.decision == pb.ABORT
        paid = await pay_until_final(gw, md, request)
        assert paid.status == pb.SUCCEEDED and paid.payment_id != txn
    finally:
        await stack.close()


async def test_gateway_killed_during_prepare_aborts_on_restart(tmp_path, certs_dir):
    """The gateway dies with a payment logged PREPARING: on restart it aborts it, and the
    banks that voted YES release their holds."""
    stack = await start_stack(tmp_path, certs_dir, twopc_timeout_s=5.0)
    try:
        gw, md = await stack.login("bob")
        before = await stack.balances()
        request = pay_request("BankA", "A-1001", 900)  # BankB debits (holds), BankA credits
        await stack.sup.freeze("BankA")
        paying = asyncio.ensure_future(gw.Pay(request, metadata=md, timeout=10))
        await stack.seen(lambda r: r.get("process") == "BankB" and r.get("phase") == Phase.VOTE)
        txn = await txn_of(stack)
        await stack.sup.kill("gateway")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await paying
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        await stack.sup.thaw("BankA")  # BankA now votes YES to a coordinator that is gone
        assert (await stack.ledgers("BankB"))["BankB"].held_cents == 900

        await stack.sup.restart("gateway")
        recovered = await stack.seen(lambda r: r.get("phase") == Phase.DECISION and r.get("txn") == txn)
        assert [r["decision"] for r in recovered] == [Decision.ABORT]
        await eventually(stack.settled, timeout_s=15)
        states = await stack.assert_atomic()
        assert LedgerState.COMMITTED not in states[txn].values()
        assert await stack.balances() == before

        paid = await pay_until_final(gw, md, request)
        assert paid.status == pb.SUCCEEDED and paid.payment_id != txn
        assert (await stack.balances())[("BankB", "B-2001")] == before[("BankB", "B-2001")] - 900
    finally:
        await stack.close()


async def test_gateway_killed_before_it_knows_its_claim_is_on_disk(tmp_path, certs_dir):
    """The gateway sends its prepares while its claim's commit is still going to disk, and
    dies once the votes came: whether the claim reached the disk or not, the payment ends
    aborted at every bank (restart aborts a recorded PREPARING; a bank that asks about one
    nobody recorded hears presumed abort), no hold stays, and a retry under its key pays once."""
    stack = await start_stack(
        tmp_path, certs_dir, proc_env={"gateway": fault_env("gateway.crash_before_claim_on_disk")}
    )
    try:
        gw, md = await stack.login("bob")
        before = await stack.balances()
        request = pay_request("BankA", "A-1001", 700)  # BankB holds bob's 700, BankA credits
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.Pay(request, metadata=md, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await exited(stack, "gateway") == 77
        txn = await txn_of(stack)

        stack.set_env("gateway", {})
        await stack.sup.restart("gateway")
        await eventually(stack.settled, timeout_s=15)
        states = await stack.assert_atomic()
        assert LedgerState.COMMITTED not in states.get(txn, {}).values()
        assert await stack.balances() == before

        paid = await pay_until_final(gw, md, request)
        assert paid.status == pb.SUCCEEDED and paid.payment_id != txn
        after = await stack.balances()
        assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] - 700
        assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] + 700
    finally:
        await stack.close()


async def test_a_payment_cut_off_at_its_claim_is_presumed_aborted_and_its_key_freed(tmp_path, certs_dir):
    """The database died as the gateway wrote a claim: the commit landed but the gateway
    was told it failed, so it never paid. Nobody else would end that PREPARING payment (no
    bank voted), and its key would say "in progress" for ever: the sweeper presumes abort."""
    from backend.common.db import Database
    from backend.gateway import store

    stack = await start_stack(tmp_path, certs_dir, orphan_after_s=1.0)
    try:
        gw, alice = await stack.login("alice")
        uri = stack.cfg.databases.get("gateway")
        if uri is None:
            db = Database(stack.cfg.data_dir / "gateway.sqlite", store.MIGRATIONS)
        else:
            from backend.common.postgres import PostgresEngine

            db = Database(PostgresEngine(uri), store.PG_MIGRATIONS)
        fields = store.PaymentFields("alice", "cut-off", "BankA", "A-1001", "BankB", "B-2001", 300)
        try:
            claim = await db.write(lambda c: store.claim(c, fields, "orphan-txn"))
        finally:
            db.close()
        assert claim.kind == store.ClaimKind.NEW
        request = pay_request("BankB", "B-2001", 300, key="cut-off", from_bank="BankA", from_account="A-1001")
        with pytest.raises(grpc.aio.AioRpcError) as busy:
            await gw.Pay(request, metadata=alice, timeout=5)
        assert busy.value.code() == grpc.StatusCode.ABORTED  # in progress: nobody is paying it

        await stack.seen(lambda r: r.get("txn") == "orphan-txn" and r.get("phase") == Phase.DECISION, 15)
        paid = await gw.Pay(request, metadata=alice, timeout=5)  # the key is free again
        assert paid.status == pb.SUCCEEDED and paid.payment_id != "orphan-txn"
        await stack.assert_atomic()
    finally:
        await stack.close()
