"""The real ControlSource: launches the stack, watches it, and runs an embedded client.

Process states and log lines come from backend.supervisor; 2PC rows are folded
from the log lines by app.timeline; balances are read from each bank with the
`operator` certificate after every decision and every few seconds; health from
the standard gRPC health service.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from textual.message import Message

from app import messages as msg
from app.model import (
    LATENCY_WINDOW_PAYMENTS,
    AccountRow,
    Balances,
    BankBalances,
    BankStep,
    ClientState,
    HistoryRow,
    LogRecord,
    ProcessInfo,
    QueuedPayment,
)
from app.source import ClientError, ControlSource
from app.timeline import Timeline
from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.client.gateway_client import GatewayClient
from backend.client.retrier import Retrier
from backend.common import datadir, fixtures, tls
from backend.common.events import Event, Phase, TwoPc
from backend.common.money import format_cents
from backend.common.states import Decision, PaymentStatus, ProcessState
from backend.supervisor import StackConfig, Supervisor, stack_specs

POLL_S = 2.0
HEALTH_TIMEOUT_S = 0.5
STATS_WINDOW_S = 60  # finished seconds in the throughput sparkline
# A second is counted as finished this long after it ended: the log lines of its last
# decisions reach us a few milliseconds late.
LATE_LINES_S = 0.25
_LOG_FIELDS = ("time", "process", "level", "event")


IN_FLIGHT_WINDOW_S = 30.0


def fixture_total_cents(cfg: StackConfig) -> int:
    """What the fixtures seed: the expected total until every bank has said what it was seeded with."""
    return sum(a["balance_cents"] for name in cfg.bank_ports for a in fixtures.bank_accounts(cfg.bank_fixtures, name))


def committing(rows, now: float) -> int:
    """Recent payments decided COMMIT that some bank has not applied yet."""
    return sum(
        1
        for r in rows
        if r.decision == Decision.COMMIT
        and now - r.started_at < IN_FLIGHT_WINDOW_S
        and any(p.phase != BankStep.COMMITTED for p in r.participants)
    )


def percentile(ordered: list[float], q: float) -> float:
    """Nearest rank: the smallest sample with at least q of all samples at or below it."""
    assert ordered and 0 < q <= 1
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class PaymentStats:
    """What the status bar shows, from the gateway's 2PC lines; pure (every time is passed in).

    Throughput: payments the gateway decided COMMIT in each whole second, for the last
    `window_s` finished seconds (a second still running is never shown: it would read 0
    right after a commit). Latency: from the gateway's `begin` of a payment to its
    decision (what the paying client waits for, give or take the network), over the last
    `latency_window` decided payments, commits and aborts alike. How long a dead or frozen
    bank then takes to acknowledge the decision is not counted: no client waits for it."""

    def __init__(self, window_s: int = STATS_WINDOW_S, latency_window: int = LATENCY_WINDOW_PAYMENTS) -> None:
        assert window_s > 0 and latency_window > 0
        self.window_s = window_s
        self._commits: dict[int, int] = {}  # whole second (time.time()) -> commits decided in it
        self._latencies_ms: deque[float] = deque(maxlen=latency_window)

    def committed(self, at: float) -> None:
        second = int(at)
        self._commits[second] = self._commits.get(second, 0) + 1
        if len(self._commits) > 2 * self.window_s:  # bounded: forget seconds the window has left
            newest = max(self._commits)
            for old in [s for s in self._commits if s <= newest - self.window_s]:
                del self._commits[old]

    def decided(self, began_at: float, decided_at: float) -> None:
        self._latencies_ms.append(max(0.0, (decided_at - began_at) * 1000))

    def message(self, now: float) -> msg.StatsChanged:
        newest = math.floor(now - LATE_LINES_S) - 1  # the newest finished second
        seconds = range(newest - self.window_s + 1, newest + 1)
        ordered = sorted(self._latencies_ms)
        return msg.StatsChanged(
            tuple(self._commits.get(s, 0) for s in seconds),
            percentile(ordered, 0.50) if ordered else None,
            percentile(ordered, 0.99) if ordered else None,
        )

    def next_tick_at(self, now: float) -> float:
        """When the next second will count as finished."""
        return math.floor(now - LATE_LINES_S) + 1 + LATE_LINES_S


class LiveSource(ControlSource):
    def __init__(self, cfg: StackConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self._post: Callable[[Message], None] = lambda m: None
        self._lock = None
        self.sup = Supervisor(stack_specs(cfg), self._on_record, self._on_change)
        self.timeline = Timeline()
        self._health: dict[str, str] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: list[asyncio.Task] = []
        self._slow_motion_ms = 0  # what the presenter asked for; a restarted gateway gets it again
        self._balances_due = asyncio.Event()
        self.stats = PaymentStats()
        self._fixture_total = fixture_total_cents(cfg)
        self._seeded: dict[str, int] = {}  # bank -> what it was seeded with (never changes)
        self._off_streak = 0
        self.client: GatewayClient | None = None
        self.retrier: Retrier | None = None

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
        self.client = GatewayClient(
            self.cfg.gateway_address, self.cfg.certs_dir, self.cfg.data_dir / "control-room-client"
        )
        self.client.on_outbox_change = self._post_outbox
        self.retrier = Retrier(self.client, on_round=lambda report: self._after_payments())
        self.retrier.start()
        self._post_outbox()
        await self.sup.start_all()
        self._balances_due.set()
        if self.client.session is not None:
            await self.refresh_client()

    async def stop(self) -> None:
        if self.retrier is not None:
            await self.retrier.stop()
        if self.client is not None:
            await self.client.close()
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
        if state.state != ProcessState.SERVING:
            self._health[state.spec.name] = "UNKNOWN"
        else:
            # Serving again (started, restarted, thawed): what was queued may go through now.
            self._wake_retrier(all_now=True)
            if state.spec.name == "gateway" and self._slow_motion_ms:
                self._tasks.append(asyncio.create_task(self._slow_motion_again()))
        self._post_processes()
        if state.spec.kind == "bank":
            self._balances_due.set()

    def _post_processes(self) -> None:
        self._post(msg.ProcessesChanged(tuple(self._info(p) for p in self.sup.procs.values())))

    def _info(self, p) -> ProcessInfo:
        return ProcessInfo(
            name=p.spec.name,
            kind=p.spec.kind,
            state=p.state,
            port=p.spec.port,
            pid=p.pid,
            started_at=p.started_at if p.pid else None,
            restarts=p.restarts,
            health=self._health.get(p.spec.name, "UNKNOWN"),
            exit_code=p.exit_code,
            start_error=p.start_error,
        )

    def _on_record(self, raw: dict) -> None:
        record = LogRecord(
            time=float(raw.get("time") or self.clock()),
            process=str(raw.get("process", "?")),
            level=str(raw.get("level", "info")),
            event=str(raw.get("event", "")),
            fields={k: v for k, v in raw.items() if k not in _LOG_FIELDS},
        )
        self._post(msg.LogReceived(record))
        row = self.timeline.apply(record)
        if row is not None:
            self._post(msg.TxnChanged(row))
        event = TwoPc.read(record.fields) if record.event == Event.TWOPC else None
        if event is None:
            return
        if event.phase in (Phase.ACKED, Phase.COMMITTED, Phase.ABORTED):
            self._balances_due.set()
        if record.process == "gateway" and event.phase == Phase.DECISION and row is not None:
            # row is not None: this line made the decision (a decision is written once).
            self.stats.decided(row.started_at, record.time)
            if row.decision == Decision.COMMIT:
                self.stats.committed(record.time)

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
            except TimeoutError:
                pass
            self._balances_due.clear()
            in_flight = committing(self.timeline.rows(), self.clock())
            banks = await asyncio.gather(*(self._bank_balances(n) for n in self.cfg.bank_ports))
            in_flight += committing(self.timeline.rows(), self.clock())
            expected = sum(self._seeded.values()) if len(self._seeded) == len(banks) else self._fixture_total
            balances = Balances(tuple(banks), expected)
            off = balances.complete and balances.total_cents != expected
            # A total that is off while payments commit is not a loss; off twice in a row
            # with nothing committing is, and turns the line red.
            self._off_streak = self._off_streak + 1 if off and not in_flight else 0
            settling = off and (in_flight > 0 or self._off_streak < 2)
            self._post(msg.BalancesChanged(Balances(tuple(banks), expected, settling)))
            await asyncio.sleep(0.2)  # coalesce bursts of decisions into one refresh

    async def _bank_balances(self, name: str) -> BankBalances:
        if self.sup.procs[name].state != ProcessState.SERVING:
            return BankBalances(bank=name, reachable=False)
        try:
            answer = await pb_grpc.BankStub(self._channels[name]).ListAccounts(pb.ListAccountsRequest(), timeout=1.0)
        except grpc.aio.AioRpcError:
            return BankBalances(bank=name, reachable=False)
        self._seeded[name] = answer.seeded_total_cents
        return BankBalances(
            bank=name,
            reachable=True,
            total_cents=answer.total_cents,
            held_cents=answer.held_cents,
            accounts=tuple(
                AccountRow(name, a.account_id, a.owner, a.balance_cents, a.available_cents) for a in answer.accounts
            ),
        )

    async def _tick_stats(self) -> None:
        """Post the stats once a second, just after each second is finished."""
        while True:
            now = self.clock()
            self._post(self.stats.message(now))
            await asyncio.sleep(min(1.0, max(0.05, self.stats.next_tick_at(now) - self.clock())))

    # ------------------------------------------------------ embedded client --
    def _client(self) -> GatewayClient:
        if self.client is None:
            raise ClientError("UNAVAILABLE", "the control room is still starting")
        return self.client

    def _wake_retrier(self, all_now: bool = False) -> None:
        """Look at the offline queue now; with all_now (a process came back), send every
        queued payment now rather than at its next retry time."""
        if self.retrier is not None:
            self.retrier.wake(all_now=all_now)

    def _post_outbox(self) -> None:
        if self.client is None:
            return
        entries = self.client.outbox.entries()
        self._post(
            msg.OutboxChanged(
                tuple(
                    QueuedPayment(
                        idempotency_key=e.idempotency_key,
                        username=e.username,
                        payee=e.payee,
                        amount_cents=e.amount_cents,
                        attempts=e.attempts,
                        next_retry_at=e.next_retry_at,
                        last_error=e.last_error,
                        created_at=e.created_at,
                        last_code=e.last_code,
                    )
                    for e in entries
                )
            )
        )

    def _after_payments(self) -> None:
        self._post_outbox()
        asyncio.get_running_loop().create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh_client()
        except ClientError:
            pass  # the client pane shows stale data until the next refresh

    async def register(self, username: str, password: str, bank: str, account_id: str) -> None:
        await self._client().register(username, password, bank, account_id)

    async def login(self, username: str, password: str) -> None:
        await self._client().login(username, password)
        self._wake_retrier()
        self._post_outbox()
        await self.refresh_client()

    async def logout(self) -> None:
        await self._client().logout()
        self._post(msg.ClientChanged(ClientState(username=None)))

    async def pay(
        self,
        to_bank: str,
        to_account: str,
        amount_text: str,
        from_bank: str | None = None,
        from_account: str | None = None,
    ) -> str:
        delivery = await self._client().pay(
            to_bank, to_account, amount_text, from_bank=from_bank or None, from_account=from_account or None
        )
        amount = format_cents(delivery.amount_cents)
        self._post_outbox()
        if delivery.status == PaymentStatus.SUCCEEDED:
            outcome = f"paid {amount} to {delivery.payee}"
        elif delivery.status == PaymentStatus.DECLINED:
            outcome = f"declined: {delivery.reason}"
        else:
            why = delivery.error.code if delivery.error else "no answer"
            outcome = f"queued {amount} to {delivery.payee} ({why}): retrying with the same key"
            self._wake_retrier()
        await self._refresh_quietly()
        return outcome

    async def refresh_client(self) -> None:
        client = self._client()
        session = client.session
        if session is None:
            self._post(msg.ClientChanged(ClientState(username=None)))
            return
        balance = await client.balance()
        history = await client.history(page_size=20)
        self._post(
            msg.ClientChanged(
                ClientState(
                    username=session.username,
                    accounts=tuple(
                        AccountRow(a.bank, a.account_id, session.username, a.balance_cents, a.available_cents)
                        for a in balance.accounts
                    ),
                    history=tuple(
                        HistoryRow(
                            p.payment_id, p.direction, p.counterparty, p.amount_cents, p.status, p.reason, p.created_at
                        )
                        for p in history.payments
                    ),
                )
            )
        )

    async def set_slow_motion(self, pause_ms: int) -> None:
        self._slow_motion_ms = pause_ms
        try:
            answer = await pb_grpc.DemoStub(self._channels["gateway"]).SetSlowMotion(
                pb.SlowMotionRequest(pause_ms=pause_ms), timeout=2.0
            )
        except grpc.aio.AioRpcError as exc:
            raise ClientError(exc.code().name, exc.details() or "the gateway did not answer") from None
        self._post(msg.SlowMotionChanged(answer.pause_ms))

    async def _slow_motion_again(self) -> None:
        """A restarted gateway starts at full speed: give it the presenter's setting."""
        try:
            await self.set_slow_motion(self._slow_motion_ms)
        except ClientError:
            self._post(msg.SlowMotionChanged(0))

    async def sync_outbox(self) -> None:
        client = self._client()
        if client.session is None:
            raise ClientError("UNAUTHENTICATED", "log in to send queued payments")
        await client.sync()
        self._after_payments()
