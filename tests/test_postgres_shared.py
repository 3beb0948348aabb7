"""What only a shared database server can do to us (issue 10), on a real PostgreSQL server:
two gateway processes on one database racing one idempotency key, a bank's
ResolveTransaction racing the coordinator's decision, and the server killed while
payments flow."""

from __future__ import annotations

import asyncio
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import grpc
import pytest

from backend.api import strife_pb2 as pb
from backend.common.db import Database
from backend.common.postgres import PostgresEngine
from backend.common.states import Decision, Outcome
from backend.gateway import store
from backend.supervisor import Supervisor, stack_specs
from backend.testbed import free_ports
from tests import stack as stacks
from tests.stack import eventually, pay_request, start_stack

_names = itertools.count(1)


@pytest.fixture
def on_postgres(pg_server):
    stacks.pg_server, stacks.engine = pg_server, "postgres"
    try:
        yield pg_server
    finally:
        stacks.engine = "sqlite"


async def test_two_gateways_on_one_database_charge_a_raced_key_once(tmp_path, certs_dir, on_postgres):
    stack = await start_stack(tmp_path, certs_dir)
    # A second gateway process on the same database, on a port of its own.
    [spec] = [s for s in stack_specs(stack.cfg) if s.name == "gateway"]
    (port,) = free_ports(1)
    args = list(spec.args)
    args[args.index("--port") + 1] = str(port)
    args[args.index("--replica") + 1] = "gateway2"  # a replica of its own: one id is one process
    second = Supervisor([replace(spec, name="gateway2", port=port, args=args)])
    await second.start_all()
    try:
        _, alice = await stack.login("alice")
        gateways = [stack.gateway(), stack_gateway_at(stack, f"{stack.cfg.host}:{port}")]
        before = (await stack.balances())[("BankA", "A-1001")]
        request = pay_request("BankB", "B-2001", 700, key="raced-key", from_bank="BankA", from_account="A-1001")

        async def pay(i: int):
            try:
                return await gateways[i % 2].Pay(request, metadata=alice, timeout=10)
            except grpc.aio.AioRpcError as exc:
                return exc.code()

        answers = await asyncio.gather(*(pay(i) for i in range(50)))
        paid = [a for a in answers if not isinstance(a, grpc.StatusCode)]
        refused = [a for a in answers if isinstance(a, grpc.StatusCode)]
        assert paid, answers
        assert set(refused) <= {grpc.StatusCode.ABORTED}, refused  # "in progress, retry" (Stripe's 409)
        assert {(p.payment_id, p.status) for p in paid} == {(paid[0].payment_id, pb.SUCCEEDED)}
        # and afterwards both answer the same recorded payment
        again = [await g.Pay(request, metadata=alice, timeout=10) for g in gateways]
        assert {(a.payment_id, a.status) for a in again} == {(paid[0].payment_id, pb.SUCCEEDED)}
        # Read-your-writes through either gateway: alice's Balance first sees her commits to the
        # banks, also one the other replica recorded and may still be sending (it lingers for a
        # prepare to ride on), so the bank's ledger shows it after.
        seen = await gateways[0].Balance(pb.BalanceRequest(), metadata=alice, timeout=10)
        assert {(a.account.bank, a.account.account_id): a.balance_cents for a in seen.accounts}[
            ("BankA", "A-1001")
        ] == before - 700  # charged once
        assert (await stack.balances())[("BankA", "A-1001")] == before - 700
    finally:
        await second.close()
        await stack.close()


def stack_gateway_at(stack: stacks.Stack, address: str):
    from backend.api import strife_pb2_grpc as pb_grpc

    return pb_grpc.GatewayStub(stack.channel(address, "client"))


@pytest.mark.parametrize("attempt", range(10))
def test_replicas_starting_together_migrate_a_fresh_database_once(on_postgres, attempt):
    """A tier's replicas start at the same moment on an empty database: each opens it (the
    migrations run one after another, under the lock) and all see the same schema."""
    uri = on_postgres.create_database(f"fresh_{next(_names)}")
    engines = [PostgresEngine(uri) for _ in range(6)]
    conns = [engine.connect() for engine in engines]  # connected first: then they race the migration alone
    barrier = threading.Barrier(len(conns))

    def migrate(i: int) -> int:
        barrier.wait()
        return engines[i].migrate(conns[i], store.PG_MIGRATIONS)

    try:
        with ThreadPoolExecutor(len(conns)) as pool:
            found = sorted(pool.map(migrate, range(len(conns))))
        assert found == [0] + [len(store.PG_MIGRATIONS)] * (len(conns) - 1)  # one migrated, the others found it done
    finally:
        for conn, engine in zip(conns, engines, strict=True):
            conn.close()
            engine.close()


async def test_resolve_racing_the_decision_never_records_two(on_postgres):
    """The coordinator's decide() and a bank's presume_abort(), on two connections as two
    gateways would, over and over: each answers what is recorded, and both agree."""
    uri = on_postgres.create_database(f"race_{next(_names)}")
    first, second = (Database(PostgresEngine(uri), store.PG_MIGRATIONS) for _ in range(2))
    try:
        outcomes = set()
        for i in range(60):
            fields = store.PaymentFields("alice", f"k{i}", "BankA", "A-1001", "BankB", "B-2001", 100)
            txn = f"txn-{i}"
            claim = await first.write(lambda c, f=fields, t=txn: store.claim(c, f, t))
            assert claim.kind == store.ClaimKind.NEW
            commit = first.write(lambda c, t=txn: store.decide(c, t, Decision.COMMIT, Outcome.SUCCEEDED, ""))
            resolve = second.write(lambda c, t=txn: store.presume_abort(c, t, "bank asked"))
            if i % 2:
                decided, resolved = await asyncio.gather(commit, resolve)
            else:
                resolved, decided = await asyncio.gather(resolve, commit)
            recorded = await second.read(lambda c, t=txn: store.payment(c, t))
            assert Decision(decided["state"]) == resolved == Decision(recorded["state"]), (i, decided, resolved)
            outcomes.add(resolved)
        assert outcomes <= {Decision.COMMIT, Decision.ABORT}
    finally:
        first.close()
        second.close()


async def test_the_database_server_killed_while_payments_flow(tmp_path, certs_dir, on_postgres):
    """UNAVAILABLE while it is down, never a crash or INTERNAL; the same processes pay
    again once it is back; no money made or lost, nothing left in doubt."""
    stack = await start_stack(tmp_path, certs_dir)
    try:
        gw, bob = await stack.login("bob")
        total = await stack.total_cents()
        codes: list = []
        stop = asyncio.Event()

        async def pay_on():
            while not stop.is_set():
                request = pay_request("BankA", "A-1001", 10, from_bank="BankB", from_account="B-2001")
                try:
                    answer = await gw.Pay(request, metadata=bob, timeout=5)
                    codes.append(answer.status)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
                    await asyncio.sleep(0.05)

        payer = asyncio.create_task(pay_on())
        await eventually(lambda: _async(len(codes) >= 5), 10)
        pids = {name: stack.sup.procs[name].pid for name in stack.sup.procs}
        on_postgres.kill()
        down_from = len(codes)
        await eventually(lambda: _async(grpc.StatusCode.UNAVAILABLE in codes[down_from:]), 10)
        on_postgres.start()
        back_from = len(codes)
        await eventually(lambda: _async(pb.SUCCEEDED in codes[back_from:]), 30)
        stop.set()
        await payer
        assert {name: stack.sup.procs[name].pid for name in stack.sup.procs} == pids  # nobody restarted
        # retryable answers only (a call waiting on a reconnection may pass its 5 s deadline)
        assert set(codes) <= {pb.SUCCEEDED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}, codes
        await eventually(stack.settled, 30)
        await stack.assert_atomic()
        assert await stack.total_cents() == total
    finally:
        if on_postgres.pid is None:
            on_postgres.start()
        await stack.close()


async def _async(value):
    return value
