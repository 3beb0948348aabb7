"""Messages a ControlSource posts to the app. Small and immutable."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from app.model import Balances, ClientState, LogRecord, ProcessInfo, QueuedPayment, Tier, TxnRow


@dataclass
class ProcessesChanged(Message):
    processes: tuple[ProcessInfo, ...]


@dataclass
class TierChanged(Message):
    """The gateway tier: the control room's load-balancing policy, each replica's share of the
    calls and its in-flight load (posted when it changes, at most once a second)."""

    tier: Tier


@dataclass
class LogReceived(Message):
    record: LogRecord


@dataclass
class TxnChanged(Message):
    row: TxnRow


@dataclass
class BalancesChanged(Message):
    balances: Balances


@dataclass
class OutboxChanged(Message):
    entries: tuple[QueuedPayment, ...]


@dataclass
class QueuedPaymentAnswered(Message):
    """A payment of the offline queue got its final answer (paid, declined, refused)."""

    idempotency_key: str
    outcome: str


@dataclass
class ClientChanged(Message):
    state: ClientState


@dataclass
class SlowMotionChanged(Message):
    """The gateway's pause between the phases of a payment (0: off)."""

    pause_ms: int


@dataclass
class StatsChanged(Message):
    """Committed payments in each finished second (oldest first); p50/p99 from the
    gateway's begin to its decision over the last 100 decided payments."""

    rate_per_s: tuple[int, ...]
    p50_ms: float | None
    p99_ms: float | None


@dataclass
class TrafficChanged(Message):
    """Simulated traffic (the demo users paying each other through the real gateway):
    the rate asked for (0: off) and what came of the payments since the control room
    started. `queued`: traffic payments waiting in the simulated clients' outboxes after a
    failed send (resent until they get a final answer, also after the rate is set to 0);
    `failed`: refused for good (a final error, which the demo fixtures should never cause);
    `in_flight`: first sends waiting for the gateway's answer now (at most 16)."""

    per_s: float
    sent: int
    succeeded: int
    declined: int
    queued: int
    failed: int = 0
    in_flight: int = 0
