"""A circuit breaker per bank: stop sending work to a bank that is failing.

CLOSED: payments flow; the breaker counts Prepare answers. It opens after
`failures` consecutive failures (no vote: unreachable, timed out, broken), or
when at least `min_calls` answers in the last `window_s` failed at `failure_rate`
or more, or when the bank's health check says it is not serving, cannot reach it, or gets
no answer in time HEALTH_MISSES times in a row.
OPEN: a payment touching the bank is refused at once (UNAVAILABLE, BREAKER_OPEN,
with the time left as its retry delay): no key is claimed, nothing is prepared.
After `cooldown_s` (with up to `jitter` of it added, so replicas and banks do not
probe in step) the next payment is let through as the probe: HALF_OPEN.
HALF_OPEN: one probe at a time; its success closes the breaker, its failure opens
it again with the cool-down doubled (up to MAX_COOLDOWN_S), so a flapping bank is
not hammered.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backend.common import jsonlog, metrics
from backend.common.events import Event

MAX_COOLDOWN_S = 30.0
MAX_WINDOW = 10_000  # answers kept in a window, whatever its length
PROBE_TIMEOUT_S = 10.0  # a probe that never reported (its caller vanished) frees the slot after this


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    failures: int = 5  # consecutive failures that open it
    failure_rate: float = 0.5  # or this share of failures ...
    window_s: float = 10.0  # ... among the answers of this window
    min_calls: int = 20  # ... once it holds this many
    cooldown_s: float = 2.0
    jitter: float = 0.2  # up to this fraction of the cool-down is added at random


class Breaker:
    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        on_change: Callable[[str, BreakerState, BreakerState, str], None],
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.name = name
        self.config = config
        self.state = BreakerState.CLOSED
        self._on_change = on_change
        self._clock = clock
        self._rng = rng
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque()  # (when, failed), bounded by window_s and MAX_WINDOW
        self._open_until = 0.0
        self._cooldown_s = config.cooldown_s
        self._probe_since: float | None = None

    def retry_after_s(self) -> float:
        """How long until a probe may go (0 when calls may go now)."""
        if self.state == BreakerState.CLOSED:
            return 0.0
        return max(0.0, self._open_until - self._clock())

    def allow(self) -> bool:
        """May a payment touching this bank go now? In HALF_OPEN (or once the cool-down is
        over) one caller gets True: the probe, which must report success() or failure()."""
        if self.state == BreakerState.CLOSED:
            return True
        now = self._clock()
        if self.state == BreakerState.OPEN:
            if now < self._open_until:
                return False
            self._set(BreakerState.HALF_OPEN, "cool-down over: one payment probes the bank")
        if self._probe_since is not None and now - self._probe_since < PROBE_TIMEOUT_S:
            return False
        self._probe_since = now
        return True

    def success(self) -> None:
        self._consecutive = 0
        self._note(failed=False)
        if self.state != BreakerState.CLOSED:
            self._probe_since = None
            self._cooldown_s = self.config.cooldown_s
            self._set(BreakerState.CLOSED, "the bank answered")

    def failure(self, why: str) -> None:
        self._consecutive += 1
        self._note(failed=True)
        if self.state == BreakerState.HALF_OPEN:
            self._cooldown_s = min(MAX_COOLDOWN_S, self._cooldown_s * 2)
            self._open(f"the probe failed ({why})")
        elif self.state == BreakerState.CLOSED:
            if self._consecutive >= self.config.failures:
                self._open(f"{self._consecutive} failures in a row ({why})")
            elif self._rate_exceeded():
                self._open(f"{self._failed_share():.0%} of the last {len(self._window)} calls failed ({why})")

    def healthy(self) -> None:
        """The bank's health check passed: an open breaker may probe now, not after its cool-down."""
        if self.state == BreakerState.OPEN:
            self._open_until = min(self._open_until, self._clock())

    def cancel_probe(self) -> None:
        """The probe allowed by allow() did not go (another bank of its payment refused it)."""
        self._probe_since = None

    def unhealthy(self, why: str) -> None:
        """The bank's health check failed: open now (a probe follows the cool-down)."""
        if self.state == BreakerState.CLOSED:
            self._open(f"health check: {why}")

    def _open(self, why: str) -> None:
        self._probe_since = None
        self._open_until = self._clock() + self._cooldown_s * (1 + self.config.jitter * self._rng())
        self._set(BreakerState.OPEN, why)

    def _note(self, failed: bool) -> None:
        now = self._clock()
        self._window.append((now, failed))
        while self._window and (now - self._window[0][0] > self.config.window_s or len(self._window) > MAX_WINDOW):
            self._window.popleft()

    def _failed_share(self) -> float:
        return sum(f for _, f in self._window) / len(self._window) if self._window else 0.0

    def _rate_exceeded(self) -> bool:
        return len(self._window) >= self.config.min_calls and self._failed_share() >= self.config.failure_rate

    def _set(self, state: BreakerState, why: str) -> None:
        before, self.state = self.state, state
        if before != state:
            self._on_change(self.name, before, state, why)


class Breakers:
    """The gateway's breakers, one per bank; every transition is a log event ("breaker")."""

    def __init__(self, banks: list[str], config: BreakerConfig) -> None:
        self.config = config
        self._by_bank = {bank: Breaker(bank, config, _log_change) for bank in banks}
        for bank in banks:
            metrics.BREAKER_STATE.labels(bank).set(0)

    def __getitem__(self, bank: str) -> Breaker:
        return self._by_bank[bank]

    def refuse(self, banks: list[str]) -> tuple[str, float] | None:
        """None if a payment touching `banks` may go now (taking the probe of a breaker whose
        cool-down is over), else (a bank whose breaker is open, seconds until it may probe)."""
        allowed: list[Breaker] = []
        for bank in banks:
            breaker = self._by_bank[bank]
            if not breaker.allow():
                for other in allowed:
                    other.cancel_probe()
                return bank, max(breaker.retry_after_s(), MIN_RETRY_S)
            allowed.append(breaker)
        return None

    def release(self, banks: list[str]) -> None:
        """The payment that refuse() let through sent nothing after all (a replayed key)."""
        for bank in banks:
            self._by_bank[bank].cancel_probe()

    async def watch_health(self, channels: dict[str, grpc.aio.Channel]) -> None:
        """Feed each bank's standard health check (every HEALTH_INTERVAL_S) to its breaker,
        each bank on its own, so a frozen one does not delay the others' checks."""

        async def watch(bank: str, channel: grpc.aio.Channel) -> None:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                await check_health(stub, self._by_bank[bank])
                await asyncio.sleep(HEALTH_INTERVAL_S)

        await asyncio.gather(*(watch(bank, channel) for bank, channel in channels.items()))

    def record(self, bank: str, answered: bool, why: str = "") -> None:
        if answered:
            self._by_bank[bank].success()
        else:
            self._by_bank[bank].failure(why)


async def check_health(stub: health_pb2_grpc.HealthStub, breaker: Breaker) -> None:
    """One health check of a bank, told to its breaker. A bank that says it is not serving, or
    cannot be reached, opens it. A check that gets no answer in time is asked again at once:
    only HEALTH_MISSES in a row open it, as one slow answer on a busy host is not a failing
    bank (a frozen one misses them all)."""
    for _ in range(HEALTH_MISSES):
        try:
            answer = await stub.Check(_HEALTH_REQUEST, timeout=HEALTH_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                continue
            breaker.unhealthy(exc.code().name)
            return
        if answer.status == health_pb2.HealthCheckResponse.SERVING:
            breaker.healthy()
        else:
            breaker.unhealthy(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))
        return
    breaker.unhealthy(f"no answer within {HEALTH_TIMEOUT_S} s, {HEALTH_MISSES} times in a row")


MIN_RETRY_S = 0.05  # the retry delay given while a probe is already out
HEALTH_INTERVAL_S = 1.0
HEALTH_TIMEOUT_S = 0.5
HEALTH_MISSES = 2  # checks in a row without an answer in time that open a breaker
_HEALTH_REQUEST = health_pb2.HealthCheckRequest(service="")


_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def _log_change(bank: str, before: BreakerState, after: BreakerState, why: str) -> None:
    metrics.BREAKER_STATE.labels(bank).set(_GAUGE[after])
    metrics.BREAKER_TRANSITIONS.labels(bank, after).inc()
    level = "warning" if after == BreakerState.OPEN else "info"
    jsonlog.emit(Event.BREAKER, level=level, bank=bank, state=after, was=before, msg=why)
