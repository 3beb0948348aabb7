"""Plain data the control room shows. Sources fill these; widgets only read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from backend.common.states import Decision, PaymentStatus, ProcessState

# What the status bar's numbers are over (app.live_source.PaymentStats computes them).
RATE_WINDOW_S = 5  # "N payments/s": committed payments per second, mean of the last 5 finished seconds
LATENCY_WINDOW_PAYMENTS = 100  # p50/p99 of begin -> decision over the last 100 decided payments
SHARE_WINDOW_S = 10  # a gateway replica's share of the calls: over the last 10 s


@dataclass(frozen=True)
class ProcessInfo:
    name: str  # "gateway", "BankA", ...
    kind: str  # "gateway" | "bank" | "database" (the embedded PostgreSQL server: health is a login, not gRPC)
    state: ProcessState
    port: int
    pid: int | None = None
    started_at: float | None = None  # time.time() of the last start, None when not running
    restarts: int = 0
    health: str = "UNKNOWN"  # gRPC health: "SERVING" | "NOT_SERVING" | "UNKNOWN"
    exit_code: int | None = None
    start_error: str = ""  # why its last start failed, as it said ("cannot listen on 127.0.0.1:50061: ...")


@dataclass(frozen=True)
class ReplicaLoad:
    """One gateway replica's part of the tier's work."""

    name: str  # its process name, "gw-1" (the replica id it logs as)
    region: str = ""
    calls: int = 0  # client calls it answered over the last window_s (its rpc log lines)
    in_flight: int | None = None  # calls it is serving, as the tier last said (ListGateways); None: not listed


@dataclass(frozen=True)
class Tier:
    """The gateway tier as the control room sees it: how its own client picks a replica, and
    each replica's share of the calls."""

    policy: str  # the control room's load-balancing policy: pick_first | round_robin | least_load
    replicas: tuple[ReplicaLoad, ...] = ()
    window_s: int = SHARE_WINDOW_S

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.replicas)

    def share(self, name: str) -> float | None:
        """The part of the calls of the window `name` answered (0 to 1); None before any call."""
        total = self.calls
        return next((r.calls / total for r in self.replicas if r.name == name), None) if total else None

    def load(self, name: str) -> ReplicaLoad | None:
        return next((r for r in self.replicas if r.name == name), None)


@dataclass(frozen=True)
class AccountRow:
    bank: str
    account_id: str
    owner: str
    balance_cents: int
    available_cents: int


@dataclass(frozen=True)
class BankBalances:
    bank: str
    reachable: bool
    accounts: tuple[AccountRow, ...] = ()
    total_cents: int = 0
    held_cents: int = 0


@dataclass(frozen=True)
class Balances:
    banks: tuple[BankBalances, ...]
    expected_total_cents: int  # what the total over all banks must be (money is conserved)
    # True while committed payments are still reaching their banks: between the two banks'
    # commits the total is off by their amounts for a moment, which is not a loss.
    settling: bool = False

    @property
    def total_cents(self) -> int:
        return sum(b.total_cents for b in self.banks)

    @property
    def complete(self) -> bool:
        return all(b.reachable for b in self.banks)

    @property
    def conserved(self) -> bool:
        return not self.complete or self.settling or self.total_cents == self.expected_total_cents


@dataclass(frozen=True)
class LogRecord:
    """One parsed JSON line of a child process (see backend/common/jsonlog.py)."""

    time: float
    process: str
    level: str
    event: str
    fields: dict = field(default_factory=dict)  # everything else: method, user, code, ms, txn, ...


class BankStep(StrEnum):
    """Where one participant bank is in a payment's two-phase commit, as the 2PC panel shows it."""

    PREPARE_SENT = "prepare sent"
    VOTED_YES = "voted yes"
    VOTED_NO = "voted no"
    NO_ANSWER = "no answer"  # the gateway heard no vote from it
    IN_DOUBT = "in doubt"  # voted yes, has not heard the decision
    COMMITTED = "committed"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Participant:
    bank: str
    phase: BankStep


@dataclass(frozen=True)
class TxnRow:
    """One payment as it moves through two-phase commit."""

    txn_id: str
    payer: str  # "BankA/A-1001"
    payee: str  # "BankB/B-2001"
    amount_cents: int
    participants: tuple[Participant, ...]
    decision: Decision = Decision.PREPARING  # PREPARING while voting, then COMMIT or ABORT
    reason: str = ""  # "declined: insufficient funds", "BankB offline", "timeout", ...
    started_at: float = 0.0
    latency_ms: float | None = None  # from begin to the last acknowledgement
    user: str = ""
    key: str = ""  # the payment's idempotency key, "" when the gateway's begin line did not say
    attempt: int = 1  # 2 for the second transaction seen under the same user and key (a retry), ...
    replica: str = ""  # the gateway replica that ran it (said its begin): "gateway", "gw-2", ...
    # Another replica that decided it or re-sent its decision: a survivor that took the work of
    # `replica` over after its lease ran out ("" while the replica that began it finishes it).
    taken_over_by: str = ""

    @property
    def ran_on(self) -> str:
        """Which replica ran it, and which took it over: "gw-2", "gw-2→gw-1"."""
        return f"{self.replica}→{self.taken_over_by}" if self.taken_over_by else self.replica

    @property
    def in_doubt(self) -> bool:
        return any(p.phase == BankStep.IN_DOUBT for p in self.participants)

    @property
    def payment(self) -> str:
        """What every attempt of one payment shares: its user and idempotency key (a retry is a
        new transaction under the same key). Without a key, the transaction alone."""
        return f"{self.user}/{self.key}" if self.key else self.txn_id


class Tone(StrEnum):
    """How a step of a payment's story reads: the widget picks the colour."""

    PLAIN = "plain"
    GOOD = "good"
    BAD = "bad"
    DOUBT = "doubt"


@dataclass(frozen=True)
class StoryStep:
    """One thing a process said about a payment, `after_ms` after the gateway began it."""

    after_ms: float
    process: str  # who said it: "gateway", "BankA", ...
    what: str  # "voted YES", "decided ABORT: BankB offline", ...
    tone: Tone = Tone.PLAIN


@dataclass(frozen=True)
class Story:
    """A payment's story (Enter on a 2PC row): its phases in order and its log lines."""

    row: TxnRow
    steps: tuple[StoryStep, ...]
    lines: tuple[LogRecord, ...]  # every log line that names the transaction, in time order
    attempts: tuple[TxnRow, ...] = ()  # every transaction under the same key seen, oldest first (row too)
    lines_dropped: int = 0  # older lines of this transaction forgotten (each keeps its newest lines)


@dataclass(frozen=True)
class QueuedPayment:
    """A payment in the embedded client's offline queue, waiting to be sent again."""

    idempotency_key: str
    username: str
    payee: str  # "BankB/B-2001"
    amount_cents: int
    attempts: int
    next_retry_at: float | None
    last_error: str = ""
    created_at: float = 0.0
    last_code: str = ""  # status code name of the last failed send ("" before the first)


@dataclass(frozen=True)
class HistoryRow:
    """One of the logged-in user's payments, sent or received."""

    payment_id: str
    direction: str  # "sent" | "received"
    counterparty: str  # "BankB/B-2001"
    amount_cents: int
    status: PaymentStatus
    reason: str
    created_at: float


@dataclass(frozen=True)
class ClientState:
    username: str | None  # None when logged out
    accounts: tuple[AccountRow, ...] = ()
    history: tuple[HistoryRow, ...] = ()
