"""Client-side load balancing over a real gateway tier (backend/client/balancer.py): gRPC's
round_robin and pick_first with health-checked subchannels, our least_load, discovery of a
replica added later, region preference with fallback, and a payment's failover."""

from __future__ import annotations

import asyncio
import collections
import json
import sys

import grpc
import pytest

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.client import GatewayClient
from backend.client.balancer import Balancer
from backend.common.states import PaymentStatus
from tests.client_helpers import REPO, cli
from tests.stack import DEMO_PASSWORDS, Stack, eventually, start_stack


async def answered_by(balancer: Balancer, timeout_s: float = 5.0) -> str:
    stub, done = balancer.pick()
    try:
        return (await stub.ListGateways(pb.ListGatewaysRequest(), timeout=timeout_s)).answered_by
    finally:
        done()


def balancer(stack: Stack, policy: str, region: str | None = None, seeds: list[str] | None = None) -> Balancer:
    return Balancer(
        seeds or stack.cfg.gateway_addresses, stack.cfg.certs_dir, policy=policy, region=region, refresh_s=0.5
    )


async def test_round_robin_spreads_300_calls_evenly_over_3_replicas(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=3)
    b = balancer(stack, "round_robin", seeds=stack.cfg.gateway_addresses[:1])  # one seed: the rest discovered
    await b.start()
    try:
        await eventually(lambda: _live_count(b, 3), timeout_s=10)
        counts = collections.Counter([await answered_by(b) for _ in range(300)])
        assert set(counts) == {"gw-1", "gw-2", "gw-3"}
        assert all(90 <= n <= 110 for n in counts.values()), counts  # a third each, within ±10%
    finally:
        await b.close()
        await stack.close()


async def _live_count(b: Balancer, n: int) -> bool:
    await b.directory.refresh()
    b._retarget()
    return len(b.directory.replicas) == n


async def test_pick_first_keeps_one_replica_until_it_dies_then_moves_within_a_second(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=3)
    b = balancer(stack, "pick_first")
    await b.start()
    try:
        first = {await answered_by(b) for _ in range(30)}
        assert len(first) == 1
        [held] = first
        await stack.sup.kill(held)
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        while True:
            try:
                moved_to = await answered_by(b, timeout_s=1.0)
                break
            except grpc.aio.AioRpcError:
                assert loop.time() - killed_at < 1.0
                await asyncio.sleep(0.02)
        assert moved_to != held and loop.time() - killed_at <= 1.0
        assert {await answered_by(b) for _ in range(30)} == {moved_to}  # and stays there
    finally:
        await b.close()
        await stack.close()


async def test_least_load_sends_almost_nothing_to_a_frozen_replica(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=3)
    b = balancer(stack, "least_load")
    await b.start()
    try:
        await stack.sup.freeze("gw-2")
        frozen = f"127.0.0.1:{stack.cfg.gateway_replicas['gw-2']}"
        sent: list[tuple[float, str]] = []
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def worker() -> None:
            while loop.time() - started < 4.0:
                stub, done = b.pick()
                sent.append((loop.time() - started, b.last_address))
                try:
                    await stub.ListGateways(pb.ListGatewaysRequest(), timeout=1.0)
                except grpc.aio.AioRpcError:
                    pass
                finally:
                    done()

        await asyncio.gather(*(worker() for _ in range(10)))
        later = [address for t, address in sent if t >= 1.0]
        assert len(later) > 200
        assert later.count(frozen) <= 0.05 * len(later), (later.count(frozen), len(later))
    finally:
        await stack.sup.thaw("gw-2")
        await b.close()
        await stack.close()


async def test_a_replica_added_while_clients_run_gets_calls_within_5_s(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=3)
    await stack.sup.stop("gw-3")  # the tier runs with two; gw-3 joins later
    b = balancer(stack, "round_robin", seeds=stack.cfg.gateway_addresses[:1])
    await b.start()
    try:
        assert {await answered_by(b) for _ in range(20)} == {"gw-1", "gw-2"}
        await stack.sup.start("gw-3")
        await stack.sup.wait_serving("gw-3")
        loop = asyncio.get_running_loop()
        joined_at = loop.time()

        async def reached() -> bool:
            return "gw-3" in {await answered_by(b) for _ in range(6)}

        await eventually(reached, timeout_s=5, interval_s=0.1)
        assert loop.time() - joined_at <= 5.0
    finally:
        await b.close()
        await stack.close()


@pytest.mark.parametrize("policy", ["round_robin", "least_load"])
async def test_a_region_is_preferred_and_the_others_are_the_fallback(tmp_path, certs_dir, policy):
    regions = {"gw-1": "eu", "gw-2": "us", "gw-3": "us"}
    stack = await start_stack(tmp_path, certs_dir, gateways=3, regions=regions)
    b = balancer(stack, policy, region="eu")
    await b.start()
    try:
        assert {await answered_by(b) for _ in range(20)} == {"gw-1"}
        await stack.sup.kill("gw-1")

        async def fell_back() -> bool:
            try:
                return {await answered_by(b, 1.0) for _ in range(10)} <= {"gw-2", "gw-3"}
            except grpc.aio.AioRpcError:
                return False

        await eventually(fell_back, timeout_s=10, interval_s=0.1)
        await stack.sup.start("gw-1")
        await stack.sup.wait_serving("gw-1")

        async def back_home() -> bool:
            return {await answered_by(b) for _ in range(10)} == {"gw-1"}

        await eventually(back_home, timeout_s=10, interval_s=0.2)
    finally:
        await b.close()
        await stack.close()


async def test_payments_whose_replica_dies_mid_call_end_exactly_once(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=3, lease_s=2.0, in_doubt_after_s=60.0, demo=True)
    client = GatewayClient(",".join(stack.cfg.gateway_addresses), certs_dir, tmp_path / "profile", lb="round_robin")
    try:
        await client.login("alice", DEMO_PASSWORDS["alice"])
        before = await stack.balances()
        for replica in stack.cfg.gateway_replicas:  # every payment pauses mid-2PC: some die under the call
            await _slow_motion(stack, replica, 400)
        payments = [asyncio.ensure_future(client.pay("BankB", "B-2001", 100 + i, "BankA", "A-1001")) for i in range(9)]
        await stack.seen(lambda r: r.get("process") == "gw-2" and r.get("phase") == "begin")
        await stack.sup.kill("gw-2")
        deliveries = await asyncio.gather(*payments)
        assert [d.status for d in deliveries] == [PaymentStatus.SUCCEEDED] * 9
        assert len({d.idempotency_key for d in deliveries}) == 9
        await eventually(stack.settled, timeout_s=20)
        after = await stack.balances()
        moved = sum(100 + i for i in range(9))
        assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] - moved  # each once
        assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] + moved
        await stack.assert_atomic()
        # and some did die under the call: begun on gw-2, then paid under the same key elsewhere
        began = [r for r in stack.records if r.get("phase") == "begin"]
        on_gw2 = {r["key"] for r in began if r["process"] == "gw-2"}
        elsewhere = {r["key"] for r in began if r["process"] != "gw-2"}
        assert on_gw2 & elsewhere
    finally:
        await client.close()
        await stack.close()


async def _slow_motion(stack: Stack, replica: str, pause_ms: int) -> None:
    address = f"{stack.cfg.host}:{stack.cfg.gateway_replicas[replica]}"
    await pb_grpc.DemoStub(stack.channel(address, "operator")).SetSlowMotion(
        pb.SlowMotionRequest(pause_ms=pause_ms), timeout=5
    )


async def test_the_cli_lists_the_tier_pays_over_it_and_watches_payments(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, gateways=3, regions={"gw-1": "eu"})
    tier = ("--gateway", stack.cfg.gateway_addresses[0], "--lb", "round_robin")
    profile = tmp_path / "alice"
    try:
        code, out = await cli(stack, profile, *tier, "gateways")
        assert code == 0
        assert {(g["replica_id"], g["region"]) for g in out["gateways"]} == {
            ("gw-1", "eu"),
            ("gw-2", "local"),
            ("gw-3", "local"),
        }
        code, _ = await cli(stack, profile, *tier, "login", "alice", env={"STRIFE_PASSWORD": DEMO_PASSWORDS["alice"]})
        assert code == 0
        watch = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "client",
            *tier,
            "--certs",
            str(stack.cfg.certs_dir),
            "--profile",
            str(profile),
            "--json",
            "watch",
            "--cursor",
            "0",
            "--count",
            "4",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        try:
            for amount in ("1.25", "2.50"):
                code, paid = await cli(
                    stack, profile, *tier, "--region", "eu", "pay", "BankB", "B-2001", amount, "--from", "BankA"
                )
                assert code == 0 and paid["status"] == "SUCCEEDED", paid
            out_bytes, err = await asyncio.wait_for(watch.communicate(), 30)
        finally:
            if watch.returncode is None:
                watch.kill()
                await watch.wait()
        assert watch.returncode == 0, err
        events = [json.loads(line) for line in out_bytes.decode().splitlines()]
        assert [(e["kind"], e["amount_cents"]) for e in events] == [
            ("ACCEPTED", 125),
            ("COMMITTED", 125),
            ("ACCEPTED", 250),
            ("COMMITTED", 250),
        ]
        assert all(e["cursor"] and e["to_bank"] == "BankB" for e in events)
        # --region eu: both payments ran on gw-1
        assert {r["process"] for r in stack.records if r.get("phase") == "begin"} == {"gw-1"}
    finally:
        await stack.close()
