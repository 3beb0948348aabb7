"""`strife up --gateways N`: N gateway replicas on one store, then the banks, each announced."""

from __future__ import annotations

import asyncio
import signal
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import tls
from backend.testbed import free_port_run
from tests.test_server_processes import _alive


async def _strife(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )


async def test_strife_up_with_three_gateways_prints_three_addresses_that_each_list_the_tier(tmp_path, certs_dir):
    port = free_port_run(6)  # gw-1..gw-3, then BankA..BankC
    proc = await _strife(
        "up",
        "--gateways",
        "3",
        "--regions",
        "eu,us,us",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        "--certs",
        str(certs_dir),
    )
    lines: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while not any(line.startswith("stack up") for line in lines):
            line = await asyncio.wait_for(proc.stdout.readline(), 45)
            assert line, f"strife up ended early: {lines} {await proc.stderr.read()!r}"
            lines.append(line.decode())
        served = {line.split()[0]: line for line in lines if "serving on" in line}
        assert set(served) == {"gw-1", "gw-2", "gw-3", "BankA", "BankB", "BankC"}
        addresses = {name: served[name].split("serving on ")[1].split()[0] for name in served}
        assert [addresses[f"gw-{i}"] for i in (1, 2, 3)] == [f"127.0.0.1:{port + i}" for i in range(3)]
        assert [addresses[b] for b in ("BankA", "BankB", "BankC")] == [f"127.0.0.1:{port + i}" for i in (3, 4, 5)]
        assert served["gw-1"].rstrip().endswith("region eu") and served["gw-3"].rstrip().endswith("region us")
        tier_line = next(line for line in lines if line.startswith("gateway tier"))
        assert f"--gateway 127.0.0.1:{port},127.0.0.1:{port + 1},127.0.0.1:{port + 2}" in tier_line
        # every process serves Prometheus metrics on a port of its own, and says where
        metrics = {line.split()[0]: line.split("metrics at ")[1].strip() for line in lines if " metrics at " in line}
        assert set(metrics) == set(served) and len(set(metrics.values())) == len(metrics)
        for name in ("gw-1", "BankA"):
            page = await asyncio.to_thread(_get, metrics[name])
            names = {family.name for family in text_string_to_metric_families(page)}
            assert {"strife_rpc_duration_seconds", "process_cpu_seconds"} <= names

        for name in ("gw-1", "gw-2", "gw-3"):
            channel = tls.secure_channel(addresses[name], certs_dir, "client")
            try:
                answer = await pb_grpc.GatewayStub(channel).ListGateways(pb.ListGatewaysRequest(), timeout=5)
            finally:
                await channel.close()
            assert answer.answered_by == name
            listed = {g.replica_id: (g.address, g.region) for g in answer.gateways}
            assert listed == {
                "gw-1": (f"127.0.0.1:{port}", "eu"),
                "gw-2": (f"127.0.0.1:{port + 1}", "us"),
                "gw-3": (f"127.0.0.1:{port + 2}", "us"),
            }

        pids = [int(line.rsplit("pid ", 1)[1].split(")")[0]) for line in served.values()]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        for pid in pids:
            for _ in range(50):
                if not _alive(pid):
                    break
                await asyncio.sleep(0.1)
            assert not _alive(pid), f"child {pid} outlived strife up"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_strife_up_refuses_a_region_list_of_the_wrong_length_or_a_bad_count(tmp_path, certs_dir):
    common = ("--data-dir", str(tmp_path / "data"), "--certs", str(certs_dir))
    for args, said in (
        (("--gateways", "3", "--regions", "eu,us"), "--regions: give one region per replica (3), got 2"),
        (("--gateways", "2", "--regions", "eu,u s"), "--regions: bad region"),
        (("--gateways", "0"), "--gateways must be 1 to 9"),
    ):
        proc = await _strife("up", *args, *common)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 1, (args, out, err)
        assert said in err.decode(), (args, err)
        assert b"serving on" not in out


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()
