"""The real ControlSource: launches the stack, watches it, and runs an embedded client.

Process states and log lines come from backend.supervisor; 2PC rows are folded
from the log lines by app.timeline; balances are read from each bank with the
`operator` certificate after every decision and every few seconds; health from
the standard gRPC health service.

With a tier of gateway replicas (--gateways N), the embedded client and the simulated
traffic balance their calls over every replica (backend.client.balancer, policy `lb`),
so a killed replica does not stop the demo; each replica's share of the calls comes from
its rpc log lines (CallShares) and its load from ListGateways, asked once a second.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from textual.message import Message

from app import messages as msg
from app.cli.stack_db import SERVER_NAME, StackDatabase, StackDbError
from app.model import (
    LATENCY_WINDOW_PAYMENTS,
    SHARE_WINDOW_S,
    AccountRow,
    Balances,
    BankBalances,
    BankStep,
    ClientState,
    HistoryRow,
    LogRecord,
    ProcessInfo,
    QueuedPayment,
    ReplicaLoad,
    Tier,
)
from app.source import ClientError, ControlSource, PayOutcome
from app.timeline import Timeline
from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.client.gateway_client import Delivery, GatewayClient, SyncReport
from backend.client.retrier import Retrier
from backend.common import datadir, fixtures, tls
from backend.common.events import Event, Phase, TwoPc
from backend.common.money import format_cents
from backend.common.states import Decision, PaymentStatus, ProcessState
from backend.supervisor import ProcessKind, StackConfig, Supervisor, stack_specs

POLL_S = 2.0
HEALTH_TIMEOUT_S = 0.5
STATS_WINDOW_S = 60  # finished seconds in the throughput sparkline
# A second is counted as finished this long after it ended: the log lines of its last
# decisions reach us a few milliseconds late.
LATE_LINES_S = 0.25
_LOG_FIELDS = ("time", "process", "level", "event")


IN_FLIGHT_WINDOW_S = 30.0
TIER_POLL_S = 1.0  # ListGateways (each replica's load) this often, with more than one replica
TIER_TIMEOUT_S = 0.5
DEFAULT_LB = "round_robin"  # app.cli.main's default --lb
# Not the work of the tier: discovery (every client's balancer asks it) and the control room's own
# calls (operator polling, health probes).
_NOT_CALLS = ("/grpc.health.v1.Health/", "/strife.v1.Gateway/ListGateways")


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


class CallShares:
    """Calls each gateway replica answered, from its rpc log lines, per whole second over the
    last `window_s` seconds; pure (every time is passed in). Counted: what clients and banks
    ask; not discovery (ListGateways) nor the control room's own polling."""

    def __init__(self, replicas: list[str], window_s: int = SHARE_WINDOW_S) -> None:
        assert window_s > 0
        self.window_s = window_s
        self._seconds: dict[str, dict[int, int]] = {name: {} for name in replicas}

    @staticmethod
    def is_call(record: LogRecord) -> bool:
        method = str(record.fields.get("method", ""))
        return (
            record.event == Event.RPC
            and record.fields.get("role") != "operator"
            and not any(method.startswith(prefix) for prefix in _NOT_CALLS)
        )

    def add(self, record: LogRecord) -> None:
        seconds = self._seconds.get(record.process)
        if seconds is None or not self.is_call(record):
            return
        second = int(record.time)
        seconds[second] = seconds.get(second, 0) + 1
        if len(seconds) > 2 * self.window_s:  # bounded: forget seconds the window has left
            for old in [s for s in seconds if s <= second - self.window_s]:
                del seconds[old]

    def counts(self, now: float) -> dict[str, int]:
        """Calls of each replica over the last window_s seconds (the one running included)."""
        since = int(now) - self.window_s + 1
        return {name: sum(n for s, n in seconds.items() if s >= since) for name, seconds in self._seconds.items()}


# ---------------------------------------------------------------- traffic --
TRAFFIC_MAX_PER_S = 50.0  # the fastest rate the presenter may ask for
TRAFFIC_MAX_IN_FLIGHT = 16  # traffic payments being sent at once; a tick beyond that is skipped
TRAFFIC_MAX_QUEUED = 200  # traffic payments waiting in the outboxes; a tick beyond that is skipped
TRAFFIC_MAX_USERS = 8  # simulated clients: the first demo users of the fixtures
TRAFFIC_AMOUNT_CENTS = (1, 200)  # each payment: 0.01 to 2.00, so accounts rarely run dry
TRAFFIC_LOGIN_RETRY_S = 2.0  # a simulated client that could not log in tries again after this
TRAFFIC_STATUS_S = 1.0  # TrafficChanged this often while traffic runs or payments are queued
# After a process came back: send every queued traffic payment again after each of these
# pauses while some stay queued (as the Retrier's FOLLOW_UPS_S, but never skipped).
TRAFFIC_DRAIN_AGAIN_S = (0.5, 1.0, 1.0, 2.0)

Route = tuple[tuple[str, str], tuple[str, str]]  # ((from bank, account), (to bank, account))


def traffic_routes(users: list[dict]) -> dict[str, tuple[Route, ...]]:
    """For each user, every (own account, another user's account at another bank) pair."""
    accounts = {u["username"]: [(str(b), str(a)) for b, a in u.get("accounts", [])] for u in users}
    return {
        name: tuple(
            (src, dst)
            for src in own
            for other, theirs in accounts.items()
            if other != name
            for dst in theirs
            if dst[0] != src[0]
        )
        for name, own in accounts.items()
    }


@dataclass
class TrafficUser:
    """One simulated client: a demo user with its own profile (session and outbox)."""

    username: str
    password: str
    routes: tuple[Route, ...]
    client: GatewayClient
    retrier: Retrier
    logged_in: bool = False
    logging_in: bool = False
    last_login_at: float = -math.inf  # time.monotonic() of the last attempt


class Traffic:
    """Simulated clients paying each other through the real gateway.

    Each demo user of the stack's user fixtures gets a GatewayClient with its own profile
    under data_dir/traffic/<user>, so every payment has a real idempotency key and sits
    in a durable outbox until it has a final answer. A ticker starts one payment every
    1/per_s seconds on a random route, unless TRAFFIC_MAX_IN_FLIGHT payments are under
    way or TRAFFIC_MAX_QUEUED are queued: then the tick is skipped (never a backlog). A
    Retrier per user resends the queued ones (woken at once when a process comes back),
    also after the rate went to 0, until each has a final answer."""

    def __init__(
        self,
        cfg: StackConfig,
        post: Callable[[Message], None],
        rng: random.Random | None = None,
        lb: str = DEFAULT_LB,
    ) -> None:
        self.cfg = cfg
        self.lb = lb
        self.post = post
        self.rng = rng or random.Random()
        self.per_s = 0.0
        self.sent = self.succeeded = self.declined = self.failed = self.skipped = 0
        self.queued = 0  # traffic payments waiting in the outboxes, as last counted (+ those queued since)
        self._opened_at = time.time()  # outbox entries older than this were left by an earlier run
        self.last_error: str = ""  # the latest final error or unexpected failure, for a log
        self.users: list[TrafficUser] = []
        self._ticker: asyncio.Task | None = None
        self._status: asyncio.Task | None = None
        self._drain: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()  # payments and logins under way
        self._paying = 0
        self._last_posted: tuple[float, int, int, int, int, int, int] | None = None

    @property
    def directory(self) -> Path:
        return self.cfg.data_dir / "traffic"

    @property
    def in_flight(self) -> int:
        return self._paying

    # ------------------------------------------------------------ lifecycle --
    def open(self) -> None:
        """Create the simulated clients and their retriers (idempotent; inside the loop)."""
        if self.users:
            return
        self._opened_at = time.time()
        people = fixtures.users(self.cfg.user_fixtures)[:TRAFFIC_MAX_USERS]
        routes = traffic_routes(people)
        for person in people:
            name = str(person["username"])
            client = gateway_client(self.cfg, self.directory / name, self.lb)
            user = TrafficUser(name, str(person["password"]), routes[name], client, Retrier(client))
            user.retrier.on_round = lambda report, user=user: self._after_round(user, report)
            session = client.session
            user.logged_in = session is not None and session.username == name and not session.expired
            user.retrier.start()
            self.users.append(user)
        self._status = asyncio.get_running_loop().create_task(self._report(), name="strife-traffic-status")

    async def close(self) -> None:
        """Stop everything: no task, retrier or channel is left (queued payments stay on disk)."""
        tasks = [t for t in (self._ticker, self._status, self._drain) if t is not None] + list(self._tasks)
        self._ticker = self._status = self._drain = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for user in self.users:
            await user.retrier.stop()
            await user.client.close()
        self.users.clear()

    async def set_rate(self, per_s: float) -> None:
        if not 0 <= per_s <= TRAFFIC_MAX_PER_S:  # NaN fails too
            raise ClientError("INVALID_ARGUMENT", f"traffic must be 0 to {TRAFFIC_MAX_PER_S:g} payments a second")
        self.per_s = float(per_s)
        if per_s > 0:
            self.open()
            for user in self.users:
                self._log_in_if_needed(user)
            if self._ticker is None or self._ticker.done():
                self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="strife-traffic")
        elif self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        self._post_status()

    def wake(self, all_now: bool = False) -> None:
        """A process came back (all_now): resend every queued traffic payment now, and
        again TRAFFIC_DRAIN_AGAIN_S later while some stay queued (the gateway's channel to
        a bank that just restarted takes up to a second to reconnect, so the first resends
        may fail fast; the Retrier's own follow-ups are dropped when an entry falls due
        sooner, which with many queued entries is almost always)."""
        for user in self.users:
            user.retrier.wake(all_now=all_now)
        if all_now and self.users:
            if self._drain is not None:
                self._drain.cancel()
            self._drain = asyncio.get_running_loop().create_task(self._drain_again(), name="strife-traffic-drain")

    async def _drain_again(self) -> None:
        for delay_s in TRAFFIC_DRAIN_AGAIN_S:
            await asyncio.sleep(delay_s)
            if not self.queued:
                return
            for user in self.users:
                user.retrier.wake(all_now=True)

    # -------------------------------------------------------------- sending --
    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self.per_s > 0:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            interval = 1.0 / self.per_s
            next_at += interval
            now = loop.time()
            if next_at < now:  # the loop fell behind: drop the missed ticks, never catch up in a burst
                self.skipped += int((now - next_at) / interval)
                next_at = now
            self._one_payment()

    def _one_payment(self) -> None:
        ready = [u for u in self.users if u.logged_in and u.routes]
        if not ready or self._paying >= TRAFFIC_MAX_IN_FLIGHT or self.queued >= TRAFFIC_MAX_QUEUED:
            self.skipped += 1
            for user in self.users:
                self._log_in_if_needed(user)
            return
        user = self.rng.choice(ready)
        src, dst = self.rng.choice(user.routes)
        amount_cents = self.rng.randint(*TRAFFIC_AMOUNT_CENTS)
        self._paying += 1
        self._spawn(self._pay(user, src, dst, amount_cents), f"strife-traffic-pay-{user.username}")

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pay(self, user: TrafficUser, src: tuple[str, str], dst: tuple[str, str], amount_cents: int) -> None:
        try:
            self.sent += 1
            delivery = await user.client.pay(dst[0], dst[1], amount_cents, from_bank=src[0], from_account=src[1])
            self._count(user, delivery)
            if not delivery.final:
                self.queued += 1
                user.retrier.wake()
        except ClientError as exc:
            self._count_error(user, exc)
        except Exception as exc:  # noqa: BLE001 - one payment must not end the traffic; keep the reason
            self.failed += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._paying -= 1

    def _count(self, user: TrafficUser, delivery: Delivery) -> None:
        if delivery.status == PaymentStatus.SUCCEEDED:
            self.succeeded += 1
        elif delivery.status == PaymentStatus.DECLINED:
            self.declined += 1
        elif delivery.final:
            self.failed += 1
            self.last_error = str(delivery.error or delivery.status)
        elif delivery.error is not None and delivery.error.code == "UNAUTHENTICATED":
            user.logged_in = False  # the session expired or was revoked: log in again

    def _count_error(self, user: TrafficUser, exc: ClientError) -> None:
        if exc.code == "RESOURCE_EXHAUSTED":  # the outbox is full: nothing was queued
            self.sent -= 1
            self.skipped += 1
        else:
            self.failed += 1
            self.last_error = f"{exc.code}: {exc.message}"
        if exc.code == "UNAUTHENTICATED":
            user.logged_in = False

    def _after_round(self, user: TrafficUser, report: SyncReport) -> None:
        for delivery in report.deliveries:
            self._count(user, delivery)
        if report.stopped_by is not None and report.stopped_by.code == "UNAUTHENTICATED":
            user.logged_in = False

    # -------------------------------------------------------------- logging in --
    def _log_in_if_needed(self, user: TrafficUser) -> None:
        error = user.retrier.last_error
        if error is not None and error.code == "UNAUTHENTICATED":
            user.logged_in = False
        if user.logged_in or user.logging_in or time.monotonic() - user.last_login_at < TRAFFIC_LOGIN_RETRY_S:
            return
        user.logging_in = True
        user.last_login_at = time.monotonic()
        self._spawn(self._log_in(user), f"strife-traffic-login-{user.username}")

    async def _log_in(self, user: TrafficUser) -> None:
        try:
            await user.client.login(user.username, user.password)
        except ClientError as exc:
            if not exc.retryable:
                self.last_error = f"{user.username} cannot log in: {exc.code}: {exc.message}"
            return
        finally:
            user.logging_in = False
        user.logged_in = True
        user.retrier.last_error = None
        user.retrier.wake(all_now=True)  # the user is back: send what it queued meanwhile

    # -------------------------------------------------------------- reporting --
    def _waiting(self, user: TrafficUser) -> int:
        """The user's queued payments: those a send failed for (or left by an earlier run),
        not those on their first send now (they count as in flight)."""
        return sum(1 for e in user.client.outbox.entries() if e.last_code or e.created_at < self._opened_at)

    async def _report(self) -> None:
        while True:
            counts = await asyncio.gather(*(asyncio.to_thread(self._waiting, u) for u in self.users))
            self.queued = sum(counts)
            for user, queued in zip(self.users, counts, strict=True):
                if self.per_s > 0 or queued:
                    self._log_in_if_needed(user)
            self._post_status(only_if_changed=self.per_s == 0)
            await asyncio.sleep(TRAFFIC_STATUS_S)

    def _post_status(self, only_if_changed: bool = False) -> None:
        counts = (self.per_s, self.sent, self.succeeded, self.declined, self.queued, self.failed, self._paying)
        if only_if_changed and counts == self._last_posted:
            return
        self._last_posted = counts
        self.post(msg.TrafficChanged(*counts))


@dataclass
class ServerRow:
    """The embedded database server as the Processes panel shows it (the Supervisor runs the rest)."""

    state: ProcessState = ProcessState.STOPPED
    started_at: float | None = None
    restarts: int = 0
    health: str = "UNKNOWN"


class LiveSource(ControlSource):
    """`database`: where the stack keeps its state (--db); when it is an embedded PostgreSQL
    server, this source owns it: starts it before the processes, stops it after them, and
    lists it in Processes (name SERVER_NAME), where kill, freeze/thaw and restart act on it."""

    def __init__(
        self,
        cfg: StackConfig,
        clock: Callable[[], float] = time.time,
        database: StackDatabase | None = None,
        lb: str = DEFAULT_LB,
    ) -> None:
        self.cfg = cfg
        self.lb = lb
        self.database = database
        self._server = ServerRow()
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
        self.traffic = Traffic(cfg, lambda message: self._post(message), lb=lb)
        self.replicas = list(cfg.gateway_replicas)  # the gateway tier's processes: ["gateway"] or gw-1..gw-N
        self.shares = CallShares(self.replicas)
        self._in_flight: dict[str, int] = {}  # replica -> calls in flight, as ListGateways last said
        self._tier_posted: Tier | None = None

    # ------------------------------------------------------------ lifecycle --
    async def start(self, post: Callable[[Message], None]) -> None:
        self._post = post
        self._lock = datadir.lock(self.cfg.data_dir)
        if self.database is not None:
            self._open_database()
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
        if len(self.replicas) > 1:
            self._post_tier()
            self._tasks.append(asyncio.create_task(self._poll_tier()))
        self.client = gateway_client(self.cfg, self.cfg.data_dir / "control-room-client", self.lb)
        self.client.on_outbox_change = self._post_outbox
        self.retrier = Retrier(self.client, on_round=self._after_round)
        self.retrier.start()
        self._post_outbox()
        if self.traffic.directory.is_dir():  # traffic of an earlier run may have left payments queued
            self.traffic.open()
        await self.sup.start_all()
        self._balances_due.set()
        if self.client.session is not None:
            await self.refresh_client()

    async def stop(self) -> None:
        await self.traffic.close()
        if self.retrier is not None:
            await self.retrier.stop()
        if self.client is not None:
            await self.client.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.sup.close()
        if self.database is not None and self.database.owned:
            self.database.stop_server()  # after the processes: none of them is left talking to it
            self._server.state = ProcessState.STOPPED
        for channel in self._channels.values():
            await channel.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def kill_now(self) -> None:
        """Last resort from a signal handler or atexit: SIGKILL every child."""
        self.sup.kill_all_now()
        if self.database is not None:
            self.database.kill_server()

    # ------------------------------------------------------ database server --
    @property
    def _owns_server(self) -> bool:
        return self.database is not None and self.database.owned

    def _open_database(self) -> None:
        """Start the embedded server (if ours) and make the processes' databases, before any
        process starts. Blocks the event loop while the server starts (about half a second;
        a first start initializes it): it must start in the main thread, the loop's, since it
        dies with the thread that started it. Raises StackDbError (one line)."""
        assert self.database is not None
        if self._owns_server:
            self._server.state = ProcessState.STARTING
            self._post_processes()
        uris = self.database.open(["gateway", *self.cfg.bank_ports])
        self.cfg.databases.update(uris)
        self.sup = Supervisor(stack_specs(self.cfg), self._on_record, self._on_change)  # with their --db
        if self._owns_server:
            self._server_serving()

    def _server_serving(self, started: bool = True) -> None:
        """Serving: just started (or restarted), or thawed (started=False)."""
        assert self.database is not None
        self._server.state = ProcessState.SERVING
        if started:
            self._server.started_at = self.clock()
            address = f"{self.cfg.host}:{self.database.port}"
            self._server_log("info", Event.SERVING, address=address, pid=self.database.pid)
        self._wake_retrier(all_now=True)  # what waited for the database may go through now
        self._balances_due.set()
        self._post_processes()

    def _server_down(self, state: ProcessState, why: str) -> None:
        self._server.state, self._server.started_at, self._server.health = state, None, "UNKNOWN"
        self._server_log("warning", Event.STOPPING, msg=why)
        self._post_processes()

    def _server_log(self, level: str, event: Event, **fields) -> None:
        self._on_record({"time": self.clock(), "process": SERVER_NAME, "level": level, "event": event, **fields})

    def _server_info(self) -> ProcessInfo:
        assert self.database is not None
        row = self._server
        return ProcessInfo(
            name=SERVER_NAME,
            kind="database",
            state=row.state,
            port=self.database.port,
            pid=self.database.pid,
            started_at=row.started_at if self.database.pid else None,
            restarts=row.restarts,
            health=row.health,
        )

    async def _server_action(self, action: str) -> None:
        """kill / freeze / thaw / restart the embedded server (they block briefly: see _open_database)."""
        assert self.database is not None
        database, row = self.database, self._server
        if action == "kill":
            database.kill_server()
            self._server_down(ProcessState.OFFLINE, "killed (SIGKILL) by the control room")
        elif action == "freeze":
            if row.state == ProcessState.SERVING and database.freeze_server():
                row.state = ProcessState.FROZEN
                self._server_log("warning", Event.FAULT, msg="frozen (SIGSTOP) by the control room")
                self._post_processes()
        elif action == "thaw":
            if row.state == ProcessState.FROZEN and database.thaw_server():
                self._server_serving(started=False)
        elif action == "restart":
            if database.pid is not None:
                database.stop_server()
            row.restarts += 1
            row.state = ProcessState.STARTING
            self._post_processes()
            try:
                database.start_server()
            except StackDbError as exc:
                self._server_down(ProcessState.CRASHED, str(exc))
                raise ClientError("UNAVAILABLE", str(exc)) from None
            self._server_serving()

    # -------------------------------------------------------------- faults --
    async def kill(self, name: str) -> None:
        if name == SERVER_NAME and self._owns_server:
            await self._server_action("kill")
            return
        await self.sup.kill(name)

    async def freeze(self, name: str) -> None:
        if name == SERVER_NAME and self._owns_server:
            await self._server_action("freeze")
            return
        await self.sup.freeze(name)

    async def thaw(self, name: str) -> None:
        if name == SERVER_NAME and self._owns_server:
            await self._server_action("thaw")
            return
        await self.sup.thaw(name)

    async def restart(self, name: str) -> None:
        if name == SERVER_NAME and self._owns_server:
            await self._server_action("restart")
            return
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
            if state.spec.kind == ProcessKind.GATEWAY and self._slow_motion_ms:
                self._tasks.append(asyncio.create_task(self._slow_motion_again(state.spec.name)))
        self._post_processes()
        if state.spec.kind == "bank":
            self._balances_due.set()

    def _post_processes(self) -> None:
        rows = [self._info(p) for p in self.sup.procs.values()]
        if self._owns_server:
            rows.append(self._server_info())  # last: the number keys of the processes stay as they were
        self._post(msg.ProcessesChanged(tuple(rows)))

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
        self.shares.add(record)
        row = self.timeline.apply(record)
        if row is not None:
            self._post(msg.TxnChanged(row))
        event = TwoPc.read(record.fields) if record.event == Event.TWOPC else None
        if event is None:
            return
        if event.phase in (Phase.ACKED, Phase.COMMITTED, Phase.ABORTED):
            self._balances_due.set()
        if event.phase == Phase.DECISION and row is not None:
            # Only a gateway replica decides; row is not None: this line made the decision (a
            # decision is written once).
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
            changed = await self._check_server() or changed
            if changed:
                self._post_processes()
            await asyncio.sleep(1.0)

    async def _poll_tier(self) -> None:
        """Each replica's calls in flight (ListGateways from a serving one), and the shares."""
        while True:
            await self._ask_tier()
            self._post_tier()
            await asyncio.sleep(TIER_POLL_S)

    async def _ask_tier(self) -> None:
        for name in self.replicas:
            if self.sup.procs[name].state != ProcessState.SERVING:
                continue
            try:
                answer = await pb_grpc.GatewayStub(self._channels[name]).ListGateways(
                    pb.ListGatewaysRequest(), timeout=TIER_TIMEOUT_S
                )
            except grpc.aio.AioRpcError:
                continue
            # The replica that answered counts this call among its own.
            self._in_flight = {
                g.replica_id: max(0, g.in_flight - (g.replica_id == answer.answered_by)) for g in answer.gateways
            }
            return
        self._in_flight = {}

    def _post_tier(self) -> None:
        counts = self.shares.counts(self.clock())
        tier = Tier(
            self.lb,
            tuple(
                ReplicaLoad(name, self.cfg.regions.get(name, "local"), counts.get(name, 0), self._in_flight.get(name))
                for name in self.replicas
            ),
            self.shares.window_s,
        )
        if tier != self._tier_posted:
            self._tier_posted = tier
            self._post(msg.TierChanged(tier))

    async def _check_server(self) -> bool:
        """The embedded server's health (a login), and whether it died by itself; True if that changed."""
        if not self._owns_server:
            return False
        assert self.database is not None
        row = self._server
        if row.state in (ProcessState.SERVING, ProcessState.FROZEN) and self.database.pid is None:
            self._server_down(ProcessState.CRASHED, "exited, not by the control room")
            return True
        status = "UNKNOWN"
        if row.state in (ProcessState.SERVING, ProcessState.FROZEN):
            status = "SERVING" if await self.database.healthy() else "NOT_SERVING"
        if row.state not in (ProcessState.SERVING, ProcessState.FROZEN):
            status = "UNKNOWN"  # killed or restarted while we asked
        changed, row.health = row.health != status, status
        return changed

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
        if all_now:
            self.traffic.wake(all_now=True)

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

    def _after_round(self, report: SyncReport) -> None:
        """The retrier sent queued payments: say which got their final answer."""
        for delivery in report.deliveries:
            if delivery.final:
                self._post(msg.QueuedPaymentAnswered(delivery.idempotency_key, outcome_text(delivery)))
        self._after_payments()

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
    ) -> PayOutcome:
        delivery = await self._client().pay(
            to_bank, to_account, amount_text, from_bank=from_bank or None, from_account=from_account or None
        )
        self._post_outbox()
        if delivery.final:
            outcome = PayOutcome(outcome_text(delivery))
        else:
            why = delivery.error.code if delivery.error else "no answer"
            amount = format_cents(delivery.amount_cents)
            outcome = PayOutcome(
                f"queued {amount} to {delivery.payee} ({why}): retrying with the same key", delivery.idempotency_key
            )
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
        """Every running replica of the tier pauses `pause_ms` (a replica down now gets it when
        it serves again); an error only if none took it."""
        self._slow_motion_ms = pause_ms
        running = [n for n in self.replicas if self.sup.procs[n].state == ProcessState.SERVING] or self.replicas
        answers = await asyncio.gather(*(self._slow_motion_of(n, pause_ms) for n in running))
        taken = [a for a in answers if isinstance(a, int)]
        if not taken:
            raise next(a for a in answers if isinstance(a, ClientError))
        self._post(msg.SlowMotionChanged(max(taken)))

    async def _slow_motion_of(self, replica: str, pause_ms: int) -> int | ClientError:
        try:
            answer = await pb_grpc.DemoStub(self._channels[replica]).SetSlowMotion(
                pb.SlowMotionRequest(pause_ms=pause_ms), timeout=2.0
            )
        except grpc.aio.AioRpcError as exc:
            return ClientError(exc.code().name, exc.details() or f"{replica} did not answer")
        return answer.pause_ms

    async def _slow_motion_again(self, replica: str) -> None:
        """A restarted replica starts at full speed: give it the presenter's setting."""
        answer = await self._slow_motion_of(replica, self._slow_motion_ms)
        if isinstance(answer, ClientError) and len(self.replicas) == 1:
            self._post(msg.SlowMotionChanged(0))

    async def sync_outbox(self) -> None:
        client = self._client()
        if client.session is None:
            raise ClientError("UNAUTHENTICATED", "log in to send queued payments")
        await client.sync()
        self._after_payments()

    async def set_traffic(self, per_s: float) -> None:
        await self.traffic.set_rate(per_s)


def gateway_client(cfg: StackConfig, profile: Path, lb: str) -> GatewayClient:
    """A client of the stack's gateway: with a tier, of every replica, balanced by `lb`
    (backend.client.balancer), so a killed replica's calls go to the others."""
    if len(cfg.gateway_replicas) == 1:
        return GatewayClient(cfg.gateway_address, cfg.certs_dir, profile)
    return GatewayClient(",".join(cfg.gateway_addresses), cfg.certs_dir, profile, lb=lb)


def outcome_text(delivery: Delivery) -> str:
    """A final answer in words: paid / declined / refused / expired."""
    amount = format_cents(delivery.amount_cents)
    if delivery.status == PaymentStatus.SUCCEEDED:
        return f"paid {amount} to {delivery.payee}"
    if delivery.status == PaymentStatus.DECLINED:
        return f"declined: {delivery.reason}"
    if delivery.status == PaymentStatus.EXPIRED:
        return f"expired {amount} to {delivery.payee}: too old to send again"
    why = f"{delivery.error.code}: {delivery.error}" if delivery.error else "no reason given"
    return f"refused {amount} to {delivery.payee} ({why})"
