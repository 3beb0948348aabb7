"""The offline queue: payments made while the gateway is down are delivered
exactly once when it is back, by new CLI processes and by the library's Retrier."""

import asyncio

import pytest

from backend.client import GatewayClient, Retrier
from backend.common import fixtures
from backend.common.states import PaymentStatus
from tests.client_helpers import begun_by, cli
from tests.stack import eventually

pytestmark = pytest.mark.usefixtures("both_engines")  # each test on SQLite and on PostgreSQL

PASSWORDS = {u["username"]: u["password"] for u in fixtures.users()}


async def test_cli_queue_survives_client_restarts_and_is_delivered_once(stack, tmp_path):
    profile = tmp_path / "bob"
    code, _ = await cli(stack, profile, "login", "bob", PASSWORDS["bob"])
    assert code == 0
    before = await stack.balances()
    total = await stack.total_cents()

    await stack.sup.kill("gateway")
    keys = []
    # Each CLI call is a new client process: the queue lives only in the profile.
    for amount in ("1.00", "2.50", "10.00"):
        code, out = await cli(stack, profile, "pay", "BankA", "A-1001", amount)
        assert code == 3, out
        assert out["status"] == PaymentStatus.QUEUED and out["error"]["code"] == "UNAVAILABLE", out
        keys.append(out["idempotency_key"])
    assert len(set(keys)) == 3
    code, queue = await cli(stack, profile, "queue")
    assert [e["idempotency_key"] for e in queue["queued"]] == keys
    assert [(e["amount_cents"], e["attempts"], e["last_code"]) for e in queue["queued"]] == [
        (100, 1, "UNAVAILABLE"),
        (250, 1, "UNAVAILABLE"),
        (1000, 1, "UNAVAILABLE"),
    ]
    code, out = await cli(stack, profile, "sync")  # still down: nothing lost, nothing sent
    assert code == 3 and len(out["remaining"]) == 3 and out["stopped_by"]["code"] == "UNAVAILABLE"

    await stack.sup.restart("gateway")
    code, out = await cli(stack, profile, "sync")
    assert code == 0, out
    assert [(d["idempotency_key"], d["status"]) for d in out["delivered"]] == [
        (k, PaymentStatus.SUCCEEDED) for k in keys
    ]
    assert out["remaining"] == []

    after = await stack.balances()
    assert after["BankB", "B-2001"] == before["BankB", "B-2001"] - 1350
    assert after["BankA", "A-1001"] == before["BankA", "A-1001"] + 1350
    assert await stack.total_cents() == total
    assert len(await begun_by(stack, "bob")) == 3

    code, out = await cli(stack, profile, "sync")  # a second sync sends nothing
    assert (code, out["delivered"], out["retried"], out["remaining"]) == (0, [], [], [])
    code, queue = await cli(stack, profile, "queue")
    assert queue["queued"] == []
    assert sorted((f["idempotency_key"], f["status"]) for f in queue["finished"]) == sorted(
        (k, PaymentStatus.SUCCEEDED) for k in keys
    )
    assert await stack.balances() == after
    assert len(await begun_by(stack, "bob")) == 3
    await stack.assert_atomic()


async def test_cli_sync_wait_retries_until_the_gateway_is_back(stack, tmp_path):
    profile = tmp_path / "bob"
    assert (await cli(stack, profile, "login", "bob", PASSWORDS["bob"]))[0] == 0
    before = await stack.balances()
    await stack.sup.kill("gateway")
    code, queued = await cli(stack, profile, "pay", "BankC", "C-3001", "4.00")
    assert code == 3

    waiting = asyncio.create_task(cli(stack, profile, "sync", "--wait", "60"))
    # Let the waiting sync find the gateway down at least once (its first round
    # failed and a second one began) before it comes back.
    await eventually(lambda: _attempts_at_least(profile, 3), timeout_s=30)
    await stack.sup.restart("gateway")
    code, out = await waiting
    assert code == 0, out
    assert [(d["idempotency_key"], d["status"]) for d in out["delivered"]] == [
        (queued["idempotency_key"], PaymentStatus.SUCCEEDED)
    ]
    assert out["rounds"] >= 2
    after = await stack.balances()
    assert after["BankC", "C-3001"] == before["BankC", "C-3001"] + 400
    assert after["BankB", "B-2001"] == before["BankB", "B-2001"] - 400


async def _attempts_at_least(profile, n: int) -> bool:
    from backend.client import Outbox

    entries = Outbox(profile / "outbox.sqlite").entries()
    return bool(entries) and entries[0].attempts >= n


async def test_retrier_delivers_after_the_gateway_returns(stack, tmp_path):
    changes = []
    async with GatewayClient(
        stack.cfg.gateway_address, stack.cfg.certs_dir, tmp_path / "alice", backoff_cap_s=1.0
    ) as client:
        client.on_outbox_change = lambda: changes.append(1)
        await client.login("alice", PASSWORDS["alice"])
        before = await stack.balances()
        await stack.sup.kill("gateway")
        first = await client.pay("BankB", "B-2001", "3.00", from_bank="BankA")
        second = await client.pay("BankB", "B-2002", 125, from_bank="BankC")
        assert (first.status, second.status) == (PaymentStatus.QUEUED, PaymentStatus.QUEUED)
        assert first.error.code == "UNAVAILABLE"
        assert [e.payee for e in client.queued()] == ["BankB/B-2001", "BankB/B-2002"]

        rounds = []
        async with Retrier(client, on_round=rounds.append, idle_poll_s=0.5) as retrier:
            await eventually(lambda: _attempts_of(client, first.idempotency_key, 2), timeout_s=30)
            await stack.sup.restart("gateway")
            retrier.wake()
            await eventually(lambda: _empty(client), timeout_s=30)
        assert not retrier.running
        sent = {s.idempotency_key: s for s in client.outbox.sent("alice")}
        assert sent[first.idempotency_key].status == PaymentStatus.SUCCEEDED
        assert sent[second.idempotency_key].status == PaymentStatus.SUCCEEDED
        assert any(d.status == PaymentStatus.SUCCEEDED for r in rounds for d in r.deliveries)
        assert changes
    after = await stack.balances()
    assert after["BankA", "A-1001"] == before["BankA", "A-1001"] - 300
    assert after["BankB", "B-2001"] == before["BankB", "B-2001"] + 300
    assert after["BankC", "C-3002"] == before["BankC", "C-3002"] - 125
    assert after["BankB", "B-2002"] == before["BankB", "B-2002"] + 125
    assert len(await begun_by(stack, "alice")) == 2


async def _attempts_of(client, key, n):
    entry = client.outbox.get(key)
    return entry is not None and entry.attempts >= n


async def _empty(client):
    return not client.outbox.entries()
