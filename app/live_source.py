"""The real ControlSource: launches the stack, watches it, and runs an embedded client.

Process states and log lines come from backend.supervisor; 2PC rows are folded
from the log lines by app.timeline; balances are read from each bank with the
`operator` certificate after every decision and every few seconds; health from
the standard gRPC health service.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from pathlib import Path
from typing import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from textual.message import Message

from app import messages as msg
from app.model import AccountRow, Balances, BankBalances, LogRecord, ProcessInfo
from app.source import ClientError, ControlSource
from app.timeline import Timeline
from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import datadir, fixtures, tls
from backend.supervisor import StackConfig, Supervisor, stack_specs

POLL_S = 2.0
HEALTH_TIMEOUT_S = 0.5
STATS_WINDOW_S = 60
LATENCY_SAMPLES = 500
_LOG_FIELDS = ("time", "process", "level", "event")


def expected_total_cents(cfg: StackConfig) -> int:
    """Money is conserved: the total is what the fixtures seeded (there are no deposits)."""
    return sum(
        a["balance_cents"] for name in cfg.bank_ports for a in fixtures.bank_accounts(cfg.bank_fixtures, name)
    )


class LiveSource(ControlSource):
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self._post: Callable[[Message], None] = lambda m: None
        self._lock = None
        self.sup = Supervisor(stack_specs(cfg), self._on_record, self._on_change)
        self.timeline = Timeline()
        self._health: dict[str, str] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: list[asyncio.Task] = []
        self._balances_due = asyncio.Event()
        self._commits: deque[float] = deque(maxlen=10_000)
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._expected_total = expected_total_cents(cfg)

    # ------------------------------------------------------------ lifecycle --
    async def start(self, post: Callable[[Message], None]) -> None:
        self._post = post
        self._lock = datadir.lock(self.cfg.data_dir)
        for spec in self.sup.procs.values():
            self._channels[spec.spec.name] = tls.secure_channel(
                f"{self.cfg.host}:{spec.spec.port}", self.cfg.certs_dir, "operator"
            )
        self._post_processes()
        self._tasks += [
            asyncio.create_task(self._poll_health()),
            asyncio.create_task(self._poll_balances()),
            asyncio.create_task(self._tick_stats()),
        ]
        await self.sup.start_all()
        self._balances_due.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.sup.close()
        for channel in self._channels.values():
            await channel.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def kill_now(self) -> None:
        """Last resort from a signal handler or atexit: SIGKILL every child."""
        self.sup.kill_all_now()

    # -------------------------------------------------------------- faults --
    async def kill(self, name: str) -> None:
        await self.sup.kill(name)

    async def freeze(self, name: str) -> None:
        await self.sup.freeze(name)

    async def thaw(self, name: str) -> None:
        await self.sup.thaw(name)

    async def restart(self, name: str) -> None:
        try:
            await self.sup.restart(name)
        except RuntimeError as exc:
            raise ClientError("UNAVAILABLE", str(exc)) from None
        self._balances_due.set()

    # ------------------------------------------------------ process events --
    def _on_change(self, state) -> None:
        if state.state not in ("serving",):
            self._health[state.spec.name] = "UNKNOWN"
        self._post_processes()
        if state.spec.kind == "bank":
            self._balances_due.set()

    def _post_processes(self) -> None:
        self._post(msg.ProcessesChanged(tuple(self._info(p) for p in self.sup.procs.values())))

    def _info(self, p) -> ProcessInfo:
        return ProcessInfo(
            name=p.spec.name, kind=p.spec.kind, state=p.state, port=p.spec.port, pid=p.pid,
            started_at=p.started_at if p.pid else None, restarts=p.restarts,
            health=self._health.get(p.spec.name, "UNKNOWN"), exit_code=p.exit_code,
        )

    def _on_record(self, raw: dict) -> None:
        record = LogRecord(
            time=float(raw.get("time") or time.time()),
            process=str(raw.get("process", "?")),
            level=str(raw.get("level", "info")),
            event=str(raw.get("event", "")),
            fields={k: v for k, v in raw.items() if k not in _LOG_FIELDS},
        )
        self._post(msg.LogReceived(record))
        row = self.timeline.apply(record)
        if row is not None:
            self._post(msg.TxnChanged(row))
        if record.event == "2pc" and record.fields.get("phase") in ("acked", "committed", "aborted"):
            self._balances_due.set()
        if record.process == "gateway" and record.fields.get("phase") == "decision":
            if record.fields.get("decision") == "COMMIT":
                self._commits.append(record.time)
        if row is not None and row.latency_ms is not None and record.fields.get("phase") == "acked":
            self._latencies.append(row.latency_ms)

    # ------------------------------------------------------------- polling --
    async def _poll_health(self) -> None:
        while True:
            changed = False
            for name, channel in self._channels.items():
                status = await self._check_health(channel) if self.sup.procs[name].pid else "UNKNOWN"
                if self._health.get(name) != status:
                    self._health[name] = status
                    changed = True
            if changed:
                self._post_processes()
            await asyncio.sleep(1.0)

    @staticmethod
    async def _check_health(channel: grpc.aio.Channel) -> str:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT_S
            )
        except grpc.aio.AioRpcError:
            return "NOT_SERVING"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)

    async def _poll_balances(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._balances_due.wait(), POLL_S)
            except asyncio.TimeoutError:
                pass
            self._balances_due.clear()
            banks = await asyncio.gather(*(self._bank_balances(n) for n in self.cfg.bank_ports))
            self._post(msg.BalancesChanged(Balances(tuple(banks), self._expected_total)))
            await asyncio.sleep(0.2)  # coalesce bursts of decisions into one refresh

    async def _bank_balances(self, name: str) -> BankBalances:
        if self.sup.procs[name].state != "serving":
            return BankBalances(bank=name, reachable=False)
        try:
            answer = await pb_grpc.BankStub(self._channels[name]).ListAccounts(pb.ListAccountsRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return BankBalances(bank=name, reachable=False)
        return BankBalances(
            bank=name, reachable=True, total_cents=answer.total_cents, held_cents=answer.held_cents,
            accounts=tuple(
                AccountRow(name, a.account_id, a.owner, a.balance_cents, a.available_cents) for a in answer.accounts
            ),
        )

    async def _tick_stats(self) -> None:
        while True:
            now = time.time()
            buckets = [0] * STATS_WINDOW_S
            for t in self._commits:
                age = int(now - t)
                if 0 <= age < STATS_WINDOW_S:
                    buckets[STATS_WINDOW_S - 1 - age] += 1
            ordered = sorted(self._latencies)
            p50 = ordered[len(ordered) // 2] if ordered else None
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else None
            self._post(msg.StatsChanged(tuple(buckets), p50, p99))
            await asyncio.sleep(1.0)
