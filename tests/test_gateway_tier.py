"""The gateway tier on real processes: replicas on one shared store (a SQLite file, or a
PostgreSQL database with both_engines), membership, shared sessions and login counts,
same-key races over replicas, and takeover of a replica that died or froze mid-payment."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import grpc
import pytest

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common.events import Event, Phase
from backend.common.states import LedgerState
from backend.gateway import login_limiter
from backend.supervisor import Supervisor, stack_specs
from tests.stack import Stack, eventually, fault_env, pay_request, start_stack

LEASE_S = 3.0  # the replicas' lease in these tests (the default is 5 s)
ALICE_PAYS = {"from_bank": "BankA", "from_account": "A-1001"}


async def listed(stack: Stack, replica: str) -> list[str]:
    answer = await stack.gateway(replica=replica).ListGateways(pb.ListGatewaysRequest(), timeout=5)
    assert answer.answered_by == replica
    return sorted(g.replica_id for g in answer.gateways)


def takeovers(stack: Stack, dead: str) -> list[dict]:
    return [r for r in stack.records if r.get("event") == Event.TAKEOVER and r.get("replica") == dead]


async def committed_at(stack: Stack, bank: str) -> list[pb.Transaction]:
    return [t for t in await stack.transactions(bank) if t.state == pb.COMMITTED]


async def pay_until_final(gw, request, metadata, timeout_s: float = 30.0):
    """Pay under one key until the answer is final: a retryable refusal (in flight,
    replica gone, not made) is sent again, as a client would."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            return await gw.Pay(request, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            retryable = exc.code() in (
                grpc.StatusCode.ABORTED,
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            if not retryable or loop.time() > deadline:
                raise
        await asyncio.sleep(0.2)


async def test_replicas_list_each_other_and_a_dead_one_is_taken_over_and_can_return(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=3, lease_s=LEASE_S, regions={"gw-1": "eu"})
    try:
        for replica in ("gw-1", "gw-2", "gw-3"):
            assert await listed(stack, replica) == ["gw-1", "gw-2", "gw-3"]
        answer = await stack.gateway(replica="gw-2").ListGateways(pb.ListGatewaysRequest(), timeout=5)
        by_id = {g.replica_id: g for g in answer.gateways}
        assert by_id["gw-1"].region == "eu" and by_id["gw-3"].region == "local"
        assert by_id["gw-3"].address == f"127.0.0.1:{stack.cfg.gateway_replicas['gw-3']}"
        assert by_id["gw-2"].in_flight >= 1  # the one answering counts this very call

        await stack.sup.kill("gw-3")
        await eventually(lambda: _listed_is(stack, "gw-1", ["gw-1", "gw-2"]), timeout_s=10)
        [took] = await eventually(lambda: _async(takeovers(stack, "gw-3")), timeout_s=15)
        assert took["process"] in ("gw-1", "gw-2")

        await stack.sup.start("gw-3")
        await stack.sup.wait_serving("gw-3")
        await eventually(lambda: _listed_is(stack, "gw-2", ["gw-1", "gw-2", "gw-3"]), timeout_s=10)
        await asyncio.sleep(LEASE_S + 1.5)
        assert len(takeovers(stack, "gw-3")) == 1  # back and beating: nobody takes it over again
    finally:
        await stack.close()


async def _listed_is(stack: Stack, replica: str, expected: list[str]) -> bool:
    return await listed(stack, replica) == expected


async def _async(value):
    return value


@pytest.mark.usefixtures("both_engines")
@pytest.mark.parametrize("senders", [10, 50])
async def test_one_key_sent_at_once_to_three_replicas_is_charged_once(tmp_path, certs_dir, senders):
    stack = await start_stack(tmp_path, certs_dir, gateways=3)
    try:
        replicas = list(stack.cfg.gateway_replicas)
        logins = [await stack.login("alice", replica=r) for r in replicas]
        before = await stack.balances()
        request = pay_request("BankB", "B-2001", 1234, key=f"tier-race-{senders}", **ALICE_PAYS)

        async def send(i: int):
            gw, metadata = logins[i % len(logins)]
            return await pay_until_final(gw, request, metadata)

        answers = await asyncio.gather(*(send(i) for i in range(senders)))
        assert {a.payment_id for a in answers} == {answers[0].payment_id}
        assert {a.status for a in answers} == {pb.SUCCEEDED}
        after = await stack.balances()
        assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] - 1234
        assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] + 1234
        assert [t.txn_id for t in await committed_at(stack, "BankB")] == [answers[0].payment_id]
        await stack.assert_atomic()
    finally:
        await stack.close()


@pytest.mark.usefixtures("both_engines")
async def test_a_logout_on_one_replica_refuses_the_token_on_another_within_a_second(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=3)
    try:
        gw1, alice = await stack.login("alice", replica="gw-1")
        gw2 = stack.gateway(replica="gw-2")
        await gw2.Balance(pb.BalanceRequest(), metadata=alice, timeout=5)  # gw-2 knows the token now
        await gw1.Logout(pb.LogoutRequest(), metadata=alice, timeout=5)
        loop = asyncio.get_running_loop()
        logged_out_at = loop.time()

        async def refused() -> bool:
            try:
                await gw2.Balance(pb.BalanceRequest(), metadata=alice, timeout=5)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                return True
            return False

        await eventually(refused, timeout_s=5, interval_s=0.05)
        assert loop.time() - logged_out_at <= 1.0
        with pytest.raises(grpc.aio.AioRpcError) as err:  # and on the third replica too
            await stack.gateway(replica="gw-3").Balance(pb.BalanceRequest(), metadata=alice, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await stack.close()


@pytest.mark.usefixtures("both_engines")
async def test_wrong_passwords_spread_over_three_replicas_lock_the_user_on_all(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=3)
    try:
        replicas = list(stack.cfg.gateway_replicas)
        for i in range(login_limiter.MAX_FAILURES):  # at most 2 per replica: no replica alone would lock
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stack.gateway(replica=replicas[i % 3]).Login(
                    pb.LoginRequest(username="bob", password="wrong-password"), timeout=10
                )
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for replica in replicas:  # the right password now: refused everywhere, and says for how long
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stack.login("bob", replica=replica)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "try again in" in (err.value.details() or "")
        await stack.login("alice", replica="gw-2")  # another user is not locked
    finally:
        await stack.close()


@pytest.mark.usefixtures("both_engines")
async def test_a_replica_killed_between_prepare_and_decision_is_taken_over_and_the_retry_pays_once(tmp_path, certs_dir):
    # Banks ask about in-doubt transactions only after 60 s here: the takeover alone frees the key.
    stack = await start_stack(
        tmp_path,
        certs_dir,
        gateways=3,
        lease_s=LEASE_S,
        in_doubt_after_s=60.0,
        proc_env={"gw-1": fault_env("gateway.crash_before_decision")},
    )
    try:
        gw1, alice1 = await stack.login("alice", replica="gw-1")
        gw2, alice2 = await stack.login("alice", replica="gw-2")
        before = await stack.balances()
        request = pay_request("BankB", "B-2001", 2500, key="dies-mid-2pc", **ALICE_PAYS)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw1.Pay(request, metadata=alice1, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the replica died under the call
        [begin] = [r for r in stack.log_lines("gw-1") if r.get("phase") == Phase.BEGIN]
        first_txn = begin["txn"]
        assert (await stack.ledgers("BankA"))["BankA"].held_cents == 2500  # the YES vote's hold

        paid = await pay_until_final(gw2, request, alice2)  # ABORTED (in flight) until the takeover
        assert paid.status == pb.SUCCEEDED and paid.payment_id != first_txn
        # the key was freed by a takeover (its log line may reach us just after the answer)
        await eventually(lambda: _async(takeovers(stack, "gw-1")), timeout_s=5)
        await eventually(stack.settled, timeout_s=15)
        states = await stack.assert_atomic()
        assert states[first_txn] == {"BankA": LedgerState.ABORTED, "BankB": LedgerState.ABORTED}
        after = await stack.balances()
        assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] - 2500
        assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] + 2500
        again = await gw2.Pay(request, metadata=alice2, timeout=10)  # and the key now replays it
        assert again.payment_id == paid.payment_id
    finally:
        await stack.close()


@pytest.mark.usefixtures("both_engines")
async def test_a_replica_frozen_past_its_lease_comes_back_without_contradicting_the_takeover(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=3, lease_s=LEASE_S, in_doubt_after_s=60.0, demo=True)
    try:
        demo = pb_demo(stack, "gw-1")
        await demo.SetSlowMotion(pb.SlowMotionRequest(pause_ms=1500), timeout=5)
        gw1, alice1 = await stack.login("alice", replica="gw-1")
        gw2, alice2 = await stack.login("alice", replica="gw-2")
        before = await stack.balances()
        request = pay_request("BankB", "B-2001", 4200, key="frozen-mid-2pc", **ALICE_PAYS)
        first = asyncio.ensure_future(gw1.Pay(request, metadata=alice1, timeout=30))
        [begin] = await stack.seen(lambda r: r.get("process") == "gw-1" and r.get("phase") == Phase.BEGIN)
        await stack.sup.freeze("gw-1")  # in its pause after "begin": PREPARING on disk, nothing sent
        await eventually(lambda: _async(takeovers(stack, "gw-1")), timeout_s=20)
        paid = await pay_until_final(gw2, request, alice2)
        assert paid.status == pb.SUCCEEDED and paid.payment_id != begin["txn"]

        await stack.sup.thaw("gw-1")
        with pytest.raises(grpc.aio.AioRpcError) as err:  # it answers what was recorded: not made
            await first
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        await stack.seen(lambda r: r.get("process") == "gw-1" and r.get("event") == Event.TAKEN_OVER)
        await eventually(lambda: _listed_is(stack, "gw-3", ["gw-1", "gw-2", "gw-3"]), timeout_s=10)
        decisions = [
            r["decision"] for r in stack.records if r.get("txn") == begin["txn"] and r.get("phase") == Phase.DECISION
        ]
        assert decisions and set(decisions) == {"ABORT"}  # by the takeover, and gw-1 read it back
        replay = await gw1.Pay(request, metadata=alice1, timeout=10)  # the key, on the thawed replica
        assert replay.payment_id == paid.payment_id
        await eventually(stack.settled, timeout_s=15)
        await stack.assert_atomic()
        after = await stack.balances()
        assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] - 4200
        assert sum(after.values()) == sum(before.values())
    finally:
        await stack.close()


def pb_demo(stack: Stack, replica: str) -> pb_grpc.DemoStub:
    address = f"{stack.cfg.host}:{stack.cfg.gateway_replicas[replica]}"
    return pb_grpc.DemoStub(stack.channel(address, "operator"))


async def test_a_bank_in_doubt_asks_a_live_replica_when_the_one_that_ran_the_payment_is_dead(tmp_path, certs_dir):
    # A lease of a minute: no takeover here, so only the banks' questions can end the payment.
    stack = await start_stack(
        tmp_path,
        certs_dir,
        gateways=2,
        lease_s=60.0,
        in_doubt_after_s=1.0,
        proc_env={"gw-1": fault_env("gateway.crash_before_decision")},
    )
    try:
        gw1, alice = await stack.login("alice", replica="gw-1")
        with pytest.raises(grpc.aio.AioRpcError):
            await gw1.Pay(pay_request("BankB", "B-2001", 900, **ALICE_PAYS), metadata=alice, timeout=10)
        [begin] = [r for r in stack.log_lines("gw-1") if r.get("phase") == Phase.BEGIN]
        await eventually(stack.settled, timeout_s=20)
        states = await stack.assert_atomic()
        assert states[begin["txn"]] == {"BankA": LedgerState.ABORTED, "BankB": LedgerState.ABORTED}
        resolved = [r for r in stack.log_lines("gw-2") if r.get("txn") == begin["txn"]]
        assert {r.get("phase") for r in resolved} >= {Phase.RESOLVED}  # gw-2 answered, presumed abort
        assert not takeovers(stack, "gw-1")
    finally:
        await stack.close()


async def test_a_replica_that_stops_heartbeating_but_answers_its_health_check_is_not_taken_over(tmp_path, certs_dir):
    stack = await start_stack(
        tmp_path, certs_dir, gateways=2, lease_s=1.5, proc_env={"gw-2": fault_env("gateway.no_heartbeats")}
    )
    try:
        gw2, alice = await stack.login("alice", replica="gw-2")
        await asyncio.sleep(1.5 * 4)  # well past its lease, and gw-1 has beaten a lease itself
        assert not takeovers(stack, "gw-2")  # alive, only silent in the store
        assert await listed(stack, "gw-1") == ["gw-1"]  # not listed for clients meanwhile
        paid = await gw2.Pay(pay_request("BankB", "B-2001", 300, **ALICE_PAYS), metadata=alice, timeout=10)
        assert paid.status == pb.SUCCEEDED
        # frozen outside a write (a replica frozen inside one holds the SQLite file's write lock:
        # the tier's writes wait for it; README), it does not answer either: taken over
        await asyncio.sleep(1.0)
        await stack.sup.freeze("gw-2")
        await eventually(lambda: _async(takeovers(stack, "gw-2")), timeout_s=15)
    finally:
        await stack.sup.thaw("gw-2")
        await stack.close()


async def test_a_dead_replica_whose_address_another_replica_took_is_still_taken_over(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=2, lease_s=1.5)
    newcomer = None
    try:
        await stack.sup.kill("gw-2")
        # a replica with another id on gw-2's port: the address answers, but not as gw-2
        [spec] = [s for s in stack_specs(stack.cfg) if s.name == "gw-2"]
        args = list(spec.args)
        args[args.index("--replica") + 1] = "gw-9"
        newcomer = Supervisor([replace(spec, name="gw-9", args=args)], on_record=stack.records.append)
        await newcomer.start_all()
        await eventually(lambda: _async(takeovers(stack, "gw-2")), timeout_s=15)
        await eventually(lambda: _listed_is(stack, "gw-1", ["gw-1", "gw-9"]), timeout_s=10)
    finally:
        if newcomer is not None:
            await newcomer.close()
        await stack.close()
