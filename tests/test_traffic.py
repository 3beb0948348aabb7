"""Simulated traffic (issue 9, "Traffic") against real gateway and bank processes.

The live source is driven directly (no app): the demo users pay each other through the
real gateway from their own outboxes; the checks are on what the banks and the gateway
recorded, never on how fast it went.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from app import messages as msg
from app.live_source import TRAFFIC_AMOUNT_CENTS, LiveSource, fixture_total_cents, traffic_routes
from app.source import ClientError
from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.client.outbox import SentEntry
from backend.common import fixtures, tls
from backend.common.states import PaymentStatus, ProcessState
from tests.stack import exited, quick_config


@pytest.fixture
async def source(tmp_path, certs_dir):
    live = LiveSource(quick_config(tmp_path, certs_dir))
    posted: list = []
    live.posted = posted  # type: ignore[attr-defined]
    try:
        await live.start(posted.append)
        await until(lambda: all(p.state == ProcessState.SERVING for p in live.sup.procs.values()), 30, "serving")
        yield live
    finally:
        await live.stop()
        live.kill_now()


async def until(condition, timeout_s: float = 30.0, what: str = "condition") -> None:
    for _ in range(int(timeout_s / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout_s} s")


async def settled(source: LiveSource, timeout_s: float = 60.0) -> None:
    """Traffic off, nothing in flight, every traffic payment has its final answer."""
    await source.set_traffic(0)

    async def queued() -> int:
        return sum(await asyncio.gather(*(asyncio.to_thread(u.client.outbox.count) for u in source.traffic.users)))

    for _ in range(int(timeout_s / 0.2)):
        if source.traffic.in_flight == 0 and await queued() == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"traffic did not settle: {source.traffic.in_flight} in flight, {await queued()} queued")


def answers(source: LiveSource) -> list[SentEntry]:
    """Every final answer the simulated clients got, over all users."""
    return [e for u in source.traffic.users for e in u.client.outbox.sent(limit=1000)]


async def bank_balances(source: LiveSource) -> dict[tuple[str, str], int]:
    out = {}
    for bank in source.cfg.bank_ports:
        channel = tls.secure_channel(source.cfg.bank_address(bank), source.cfg.certs_dir, "operator")
        try:
            answer = await pb_grpc.BankStub(channel).ListAccounts(pb.ListAccountsRequest(), timeout=5)
        finally:
            await channel.close()
        assert answer.held_cents == 0, f"{bank} still holds {answer.held_cents}"
        out.update({(bank, a.account_id): a.balance_cents for a in answer.accounts})
    return out


def expected_balances(source: LiveSource, done: list[SentEntry]) -> dict[tuple[str, str], int]:
    """The seeded balances moved by exactly the payments the clients saw succeed."""
    cfg = source.cfg
    out = {
        (bank, a["id"]): a["balance_cents"]
        for bank in cfg.bank_ports
        for a in fixtures.bank_accounts(cfg.bank_fixtures, bank)
    }
    for e in done:
        if e.status == PaymentStatus.SUCCEEDED:
            out[e.from_bank, e.from_account] -= e.amount_cents
            out[e.to_bank, e.to_account] += e.amount_cents
    return out


async def gateway_keys(source: LiveSource) -> Counter[str]:
    """How many succeeded payments the gateway holds under each traffic key."""
    keys: Counter[str] = Counter()
    for user in source.traffic.users:
        token = ""
        while True:
            page = await user.client.history(page_size=100, page_token=token)
            keys.update(
                p.idempotency_key
                for p in page.payments
                if p.direction == "sent" and p.status == PaymentStatus.SUCCEEDED
            )
            token = page.next_page_token
            if not token:
                break
    return keys


def traffic_messages(source: LiveSource) -> list[msg.TrafficChanged]:
    return [m for m in source.posted if isinstance(m, msg.TrafficChanged)]  # type: ignore[attr-defined]


def check_exactly_once(source: LiveSource, done: list[SentEntry], keys: Counter[str], balances) -> None:
    succeeded = [e.idempotency_key for e in done if e.status == PaymentStatus.SUCCEEDED]
    assert len(set(succeeded)) == len(succeeded), "a key answered twice"
    assert keys == Counter(succeeded), "the gateway's succeeded payments are not the ones the clients saw"
    assert balances == expected_balances(source, done), "a payment was charged twice, or lost"
    assert sum(balances.values()) == fixture_total_cents(source.cfg), "money was created or destroyed"


def test_routes_go_to_another_user_at_another_bank():
    routes = traffic_routes(fixtures.users())
    assert set(routes) == {"alice", "bob", "carol"}
    owner = {tuple(a): u["username"] for u in fixtures.users() for a in u["accounts"]}
    for user, pairs in routes.items():
        assert pairs, f"{user} has nobody to pay"
        for src, dst in pairs:
            assert owner[src] == user and owner[dst] != user and src[0] != dst[0]


async def test_traffic_pays_between_users_once_each_and_stops_at_zero(source):
    with pytest.raises(ClientError) as refused:
        await source.set_traffic(-1)
    assert refused.value.code == "INVALID_ARGUMENT"

    await source.set_traffic(20)
    await until(lambda: source.traffic.succeeded >= 30, 60, "30 traffic payments succeeded")
    await settled(source)
    sent = source.traffic.sent
    done = answers(source)
    assert len(done) == sent, "every payment sent has its final answer"
    assert {e.status for e in done} <= {PaymentStatus.SUCCEEDED, PaymentStatus.DECLINED}
    assert all(TRAFFIC_AMOUNT_CENTS[0] <= e.amount_cents <= TRAFFIC_AMOUNT_CENTS[1] for e in done)
    payers = {e.username for e in done if e.status == PaymentStatus.SUCCEEDED}
    assert len(payers) >= 2, f"only {payers} paid"
    assert all(e.from_bank != e.to_bank for e in done)
    check_exactly_once(source, done, await gateway_keys(source), await bank_balances(source))

    # At 0 nothing new is sent.
    await asyncio.sleep(1.5)
    assert source.traffic.sent == sent and len(answers(source)) == sent

    seen = traffic_messages(source)
    assert any(m.per_s == 20 and m.sent > 0 for m in seen), "no TrafficChanged while running"
    last = seen[-1]
    assert (last.per_s, last.sent, last.queued) == (0, sent, 0)
    assert last.succeeded + last.declined == sent

    pids = [p.pid for p in source.sup.procs.values()]
    await source.stop()
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("strife-")]
    assert not left, f"tasks left after stop: {left}"
    for pid in pids:
        assert pid is not None and exited(pid), f"child {pid} left"


@pytest.mark.parametrize("down", ["gateway", "BankC"])
async def test_traffic_queues_while_a_process_is_down_and_drains_once_each(source, down):
    await source.set_traffic(10)
    await until(lambda: source.traffic.succeeded >= 5, 60, "traffic flowing")
    await source.kill(down)
    await until(lambda: source.traffic.queued >= 5, 30, "traffic payments queued")
    assert any(m.queued > 0 for m in traffic_messages(source)), "the queue was never reported"
    await source.restart(down)
    await until(lambda: source.sup.procs[down].state == ProcessState.SERVING, 30, f"{down} serving")
    await until(lambda: source.traffic.succeeded >= 5 + 10, 60, "traffic flowing again")
    await settled(source)

    done = answers(source)
    assert len(done) == source.traffic.sent
    retried = [e for e in done if e.attempts > 1]
    assert retried, "no payment went through the queue"
    assert {e.status for e in retried} <= {PaymentStatus.SUCCEEDED, PaymentStatus.DECLINED}
    check_exactly_once(source, done, await gateway_keys(source), await bank_balances(source))
    await until(lambda: traffic_messages(source)[-1].queued == 0, 5, "the drained queue reported")


async def test_quit_with_traffic_running_leaves_nothing_behind(tmp_path, certs_dir):
    from app.app import StrifeApp

    live = LiveSource(quick_config(tmp_path, certs_dir))
    app = StrifeApp(live)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(lambda: all(p.state == ProcessState.SERVING for p in live.sup.procs.values()), 30, "serving")
            await live.set_traffic(10)
            await until(lambda: live.traffic.succeeded >= 5, 30, "traffic flowing")
            pids = [p.pid for p in live.sup.procs.values()]
            await pilot.press("q", "y")
        left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("strife-")]
        assert not left, f"tasks left after quit: {left}"
        assert not live.traffic.users
        for pid in pids:
            assert pid is not None and exited(pid), f"child {pid} left"
    finally:
        live.kill_now()
