"""Every server serves Prometheus metrics (--metrics-port) and gRPC server reflection.
Real processes: the counters move with the payments made, and a reflection client
lists each server's services over mutual TLS."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from prometheus_client.parser import text_string_to_metric_families

from backend.api import strife_pb2 as pb
from backend.common import tls
from backend.common.events import Event
from tests.stack import Stack, pay_request, start_stack


def scrape(address: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one /metrics page, parsed by prometheus_client."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def metrics_address(stack: Stack, process: str) -> str:
    [line] = await stack.seen(lambda r: r.get("event") == Event.METRICS and r.get("process") == process)
    return line["address"]


async def test_a_scrape_parses_and_its_counters_move_with_the_payments(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, metrics=True)
    try:
        gateway = await metrics_address(stack, "gateway")
        bank_a = await metrics_address(stack, "BankA")
        assert gateway.startswith("127.0.0.1:") and bank_a != gateway
        gw, alice = await stack.login("alice")
        before = await asyncio.to_thread(scrape, gateway)
        bank_before = await asyncio.to_thread(scrape, bank_a)
        for _ in range(3):
            paid = await gw.Pay(
                pay_request("BankB", "B-2001", 100, from_bank="BankA", from_account="A-1001"),
                metadata=alice,
                timeout=10,
            )
            assert paid.status == pb.SUCCEEDED
        after = await asyncio.to_thread(scrape, gateway)
        bank_after = await asyncio.to_thread(scrape, bank_a)

        def moved(before, after, name, **labels):
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0) - before.get(key, 0)

        assert moved(before, after, "strife_payments_total", outcome="succeeded") == 3
        pay_ok = {"method": "/strife.v1.Gateway/Pay", "code": "OK"}
        assert moved(before, after, "strife_rpc_duration_seconds_count", **pay_ok) == 3
        assert moved(before, after, "strife_2pc_phase_seconds_count", phase="prepare") == 3
        assert after[("strife_breaker_state", (("bank", "BankB"),))] == 0  # closed
        assert moved(bank_before, bank_after, "strife_db_commit_seconds_count") >= 3  # prepare + commit writes
        assert bank_after[("strife_db_batch_writes_count", ())] > 0
        assert bank_after[("process_cpu_seconds_total", ())] > 0
    finally:
        await stack.close()


async def test_reflection_lists_each_servers_services(stack):
    def services(address: str) -> list[str]:
        creds = tls.channel_credentials(stack.cfg.certs_dir, "operator")
        with grpc.secure_channel(address, creds) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            names = sorted(database.get_services())
            # and a method can be described from what it serves
            if "strife.v1.Gateway" in names:
                gateway = descriptor_pool.DescriptorPool(database).FindServiceByName("strife.v1.Gateway")
                assert {"Pay", "ListGateways"} <= set(gateway.methods_by_name)
            return names

    gateway = await asyncio.to_thread(services, stack.cfg.gateway_address)
    assert {"strife.v1.Gateway", "strife.v1.Coordinator", "strife.v1.Demo", "grpc.health.v1.Health"} <= set(gateway)
    assert "strife.v1.Bank" not in gateway
    bank = await asyncio.to_thread(services, stack.cfg.bank_address("BankA"))
    assert "strife.v1.Bank" in bank and "strife.v1.Gateway" not in bank


async def test_the_health_services_watch_streams_through_the_interceptors(stack):
    """Client-side health checking (gRPC's round_robin) calls Health.Watch, a stream written
    with context.write rather than yielded: it must pass the interceptors and say SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for address in (stack.cfg.gateway_address, stack.cfg.bank_address("BankA")):
        watch = health_pb2_grpc.HealthStub(stack.channel(address, "client")).Watch(health_pb2.HealthCheckRequest())
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
