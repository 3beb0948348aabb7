"""`strife bench --scenario tier|failover --gateways N --lb P`: the gateway tier under load.

One throwaway stack with N gateway replicas on one store (--db); each of --clients clients
balances its calls over them with its own Balancer (backend/client/balancer.py, policy
--lb) and pays random payees for --duration seconds, sending a payment again under the
SAME key after a retryable failure (a replica died under it, its key waits for the
takeover) until it gets a final answer, as the client library does.

tier:     payments/s, p50/p99 and each replica's share of the Pay calls it served.
failover: the replica that served the most payments so far is killed (SIGKILL) a third of the
          way in (with pick_first, the one every client uses). The failover gap of a client is
          from its first failure after the kill to its next success; the report gives their
          p50/p99 (JSON failover_gap_ms), the retries, the errors (a payment that succeeded
          under its key after a retry is not one), and checks that no payment was lost or
          doubled: the transactions committed at the banks are exactly the acknowledged ones.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from app.bench.cpu import CpuWatch
from app.bench.paying import percentile, random_payment
from app.bench.stack import OwnStack
from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.client.balancer import Balancer
from backend.client.errors import ClientError
from backend.common import tls
from backend.common.events import Event
from backend.testbed import stack_config

RETRY_CODES = {"UNAVAILABLE", "ABORTED", "DEADLINE_EXCEEDED"}
RETRY_PAUSE_S = 0.05
PAY_TIMEOUT_S = 10.0
LEASE_S = 5.0
MAX_WAITING = 16  # payments of one client waiting in the background for a takeover


async def tier(args: argparse.Namespace, root: Path, certs_dir: Path, say: Callable[[str], None]) -> dict:
    failover = args.scenario == "failover"
    gateways = max(args.gateways, 2) if failover else args.gateways
    stack = OwnStack(root, certs_dir, args.banks, args.clients, 2.0, engine=args.db)
    stack.cfg = stack_config(
        root,
        certs_dir=certs_dir,
        bank_fixtures=root / "fixtures" / "banks.json",
        user_fixtures=root / "fixtures" / "users.json",
        twopc_timeout_s=2.0,
        gateways=gateways,
        lease_s=LEASE_S,
    )
    stack.gateway = ",".join(stack.cfg.gateway_addresses)
    served: dict[str, int] = {}

    def count(record: dict) -> None:
        if record.get("event") == Event.RPC and str(record.get("method", "")).endswith("/Pay"):
            served[str(record.get("process"))] = served.get(str(record.get("process")), 0) + 1
        stack.log(record)

    balancers: list[Balancer] = []
    try:
        await stack.start()
        stack.sup.on_record = count
        sessions = []
        for user in stack.users[: args.clients]:
            balancer = Balancer(stack.cfg.gateway_addresses, certs_dir, policy=args.lb)
            await balancer.start()
            balancers.append(balancer)
            stub, done = balancer.pick()
            answer = await stub.Login(pb.LoginRequest(username=user.username, password=user.password), timeout=30)
            done()
            sessions.append((balancer, (("authorization", f"Bearer {answer.token}"),), user))
        served.clear()
        kill_at_s = args.duration / 3
        results: list[dict] = []
        loop = asyncio.get_running_loop()
        began = loop.time()

        killed: list[str] = []

        async def kill_later() -> None:
            await asyncio.sleep(kill_at_s)
            busiest = max(stack.cfg.gateway_replicas, key=lambda name: served.get(name, 0))
            killed.append(busiest)
            await stack.sup.kill(busiest)

        watch = CpuWatch(stack.pids(), stack.db_server_pid())
        killer = asyncio.ensure_future(kill_later()) if failover else None
        await asyncio.gather(
            *(_client(s, stack.users, began, args.duration, args.seed + i, results) for i, s in enumerate(sessions))
        )
        used_s, cpu_pct = watch.stop("bench (clients, supervisor, log reader)")
        if killer is not None:
            await killer
        for _ in range(60):  # the takeover re-sends a dead replica's decisions: wait until none is held
            if (await stack.money())["held_cents"] == 0:
                break
            await asyncio.sleep(0.5)
        committed = await _committed(stack, certs_dir)
    finally:
        for balancer in balancers:
            await balancer.close()
        await stack.close()
    ok = [r for r in results if r["code"] == "OK"]
    acked = {r["payment_id"] for r in ok if r["payment_id"]}  # SUCCEEDED ones (a decline moves nothing)
    total_calls = sum(served.values()) or 1
    report = {
        "gateways": gateways,
        "lb": args.lb,
        "payments_per_s": round(len(ok) / args.duration, 1),
        "p50_ms": percentile([r["latency_ms"] for r in ok], 0.50),
        "p99_ms": percentile([r["latency_ms"] for r in ok], 0.99),
        "replica_share": {name: round(n / total_calls, 3) for name, n in sorted(served.items())},
        # CPU of each server process over the paying phase, per payment made (all processes:
        # what the same design needs per payment, whatever the number of cores)
        "cpu_ms_per_payment": {name: round(1000 * s / max(1, len(ok)), 3) for name, s in used_s.items()},
        "cpu_pct_of_core": cpu_pct,
        "retries": sum(r["retries"] for r in results),
        "retried_then_succeeded": sum(1 for r in ok if r["retries"]),
        "errors": sum(1 for r in results if r["code"] != "OK"),
        "error_codes": _counts(r["code"] for r in results if r["code"] != "OK"),
        "acknowledged": len(acked),
        "committed_at_banks": len(committed),
        "lost": len(acked - committed),
        "doubled_or_unacknowledged": len(committed - acked),
    }
    if failover:
        gaps = _gaps(results, kill_at_s)
        report.update(
            {
                "killed": killed[0] if killed else None,
                "clients_that_saw_a_failure": len(gaps),
                "killed_at_s": round(kill_at_s, 2),
                "failover_gap_ms": {"p50": percentile(gaps, 0.5), "p99": percentile(gaps, 0.99)},
            }
        )
    say(f"{report['payments_per_s']} payments/s over {gateways} replicas ({args.lb}); shares {report['replica_share']}")
    return {
        "scenario": args.scenario,
        args.scenario: report,
        "ok": report["lost"] == 0 and report["doubled_or_unacknowledged"] == 0,
    }


async def _client(session, users, began: float, duration_s: float, seed: int, results: list[dict]) -> None:
    """Pay random payees until the run ends; each payment under one key until its final answer.
    A payment whose key is still in flight at a dead replica (ABORTED until the takeover) is
    left to finish in the background while the client goes on with new ones, as a client
    with an outbox does."""
    balancer, metadata, user = session
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    waiting: set[asyncio.Task] = set()

    async def until_final(request, started: float, failures: list[float], background: bool) -> None:
        while True:
            stub, done = balancer.pick()
            at_s = loop.time() - began
            try:
                payment = await stub.Pay(request, metadata=metadata, timeout=PAY_TIMEOUT_S)
                code, payment_id = "OK", payment.payment_id if payment.status == pb.SUCCEEDED else ""
            except grpc.aio.AioRpcError as exc:
                code, payment_id = ClientError.from_rpc(exc).code, ""
            finally:
                done()
            if code == "OK" or code not in RETRY_CODES or loop.time() - began > duration_s + 3 * LEASE_S:
                break
            failures.append(at_s)
            if code == "ABORTED" and not background and len(waiting) < MAX_WAITING:
                task = asyncio.ensure_future(until_final(request, started, failures, background=True))
                waiting.add(task)
                task.add_done_callback(waiting.discard)
                return
            await asyncio.sleep(RETRY_PAUSE_S)
        results.append(
            {
                "user": user.username,
                "code": code,
                "payment_id": payment_id,
                "latency_ms": (time.perf_counter() - started) * 1000,
                "retries": len(failures),
                "failures_s": failures,
                "ended_s": loop.time() - began,
            }
        )

    while loop.time() - began < duration_s:
        _, request = random_payment(rng, user, users)
        await until_final(request, time.perf_counter(), [], background=False)
    if waiting:
        await asyncio.gather(*waiting)


def _gaps(results: list[dict], kill_at_s: float) -> list[float]:
    """Per client: from its first failed attempt after the kill to the end of its next success."""
    gaps = []
    for user in sorted({r["user"] for r in results}):
        mine = [r for r in results if r["user"] == user]
        first_failure = min((t for r in mine for t in r["failures_s"] if t >= kill_at_s), default=None)
        if first_failure is None:
            continue
        recovered = min(
            (r["ended_s"] for r in mine if r["code"] == "OK" and r["ended_s"] > first_failure), default=None
        )
        if recovered is not None:
            gaps.append((recovered - first_failure) * 1000)
    return gaps


async def _committed(stack: OwnStack, certs_dir: Path) -> set[str]:
    """The transactions committed at any bank (each payment's at its payer's bank at least)."""
    committed: set[str] = set()
    for name in stack.names:
        async with tls.secure_channel(stack.cfg.bank_address(name), certs_dir, "operator") as channel:
            stub = pb_grpc.BankStub(channel)
            token = ""
            while True:
                page = await stub.ListTransactions(
                    pb.ListTransactionsRequest(page_size=1000, page_token=token), timeout=30
                )
                committed.update(t.txn_id for t in page.transactions if t.state == pb.COMMITTED)
                token = page.next_page_token
                if not token:
                    break
    return committed


def _counts(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out
