"""The log events every process emits and the control room reads: names and
fields, defined once.

Each event is one JSON line (backend/common/jsonlog.py) with `event`; a 2PC
event adds `phase` and the fields of `TwoPc`. Who says what, per payment:
  gateway: begin (key claimed, PREPARING on disk, prepares go out to every
           participant), vote NONE for a bank that gave no vote, decision (on
           disk), acked (the banks that acknowledged it), resolved (a bank asked);
  bank:    vote YES/NO, committed/aborted (applied), in_doubt and resolve_failed
           (it asks the gateway about a YES vote it heard nothing of).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TypeVar

from backend.common import jsonlog
from backend.common.states import Decision


class Event(StrEnum):
    RPC = "rpc"  # one per unary call: method, code, ms, and what the call noted (user, txn, ...)
    TWOPC = "2pc"
    SERVING = "serving"
    STOPPING = "stopping"
    START_FAILED = "start_failed"
    SEEDED = "seeded"
    REGISTERED = "registered"
    RECOVERED = "recovered"
    IDEMPOTENT_REPLAY = "idempotent_replay"
    RESEND_ERROR = "resend_error"
    RESOLVE_ERROR = "resolve_error"
    LEDGER_REFUSED = "ledger_refused"
    FAULT = "fault"
    SLOW_MOTION = "slow_motion"  # the gateway's demo pause between phases changed
    INTERNAL_ERROR = "internal_error"  # an exception no handler expected (a bug): answered INTERNAL
    OUTPUT = "output"  # a line a child printed that is not one of ours (the supervisor wraps it)
    METRICS = "metrics"  # where the process serves its Prometheus metrics (address)
    BREAKER = "breaker"  # a bank's circuit breaker changed state (bank, state, was, msg: why)
    JOINED = "joined"  # a gateway replica registered in the tier (replica, address, region)
    TAKEOVER = "takeover"  # a replica took over the work of one whose lease ran out (replica: the dead one)
    TAKEN_OVER = "taken_over"  # this replica came back after its work was taken over, and rejoined
    REPLACED = "replaced"  # another process registered with this replica's id: this one stops


class Phase(StrEnum):
    BEGIN = "begin"
    VOTE = "vote"
    DECISION = "decision"
    ACKED = "acked"
    DECISION_UNACKED = "decision_unacked"  # a bank did not acknowledge it (yet): sent again later
    DECISION_REFUSED = "decision_refused"  # a bank's ledger contradicts it: never expected
    RESOLVED = "resolved"
    COMMITTED = "committed"
    ABORTED = "aborted"
    IN_DOUBT = "in_doubt"
    RESOLVE_FAILED = "resolve_failed"


class Vote(StrEnum):
    YES = "YES"
    NO = "NO"
    NONE = "NONE"  # the bank gave no vote: offline, timed out, failed


@dataclass(slots=True)  # not frozen: a frozen dataclass is 3x slower to build, and payments build 5 of these
class TwoPc:
    """One 2PC event. Fields left None are not written."""

    phase: Phase
    txn: str
    bank: str | None = None
    banks: list[str] | None = None
    vote: Vote | None = None
    decision: Decision | None = None
    reason: str | None = None
    code: str | None = None
    msg: str | None = None
    user: str | None = None
    key: str | None = None  # the payment's idempotency key (begin): retries of one payment share it
    amount_cents: int | None = None
    from_bank: str | None = None
    from_account: str | None = None
    to_bank: str | None = None
    to_account: str | None = None

    def emit(self, level: str = "info") -> None:
        line = jsonlog.record(Event.TWOPC, level)
        for name in _TWOPC_FIELDS:
            value = getattr(self, name)
            if value is not None:
                line[name] = value
        jsonlog.write(line)

    @classmethod
    def read(cls, record: dict) -> TwoPc | None:
        """The event a log line's fields hold, or None if they are not a 2PC event we know."""
        try:
            phase = Phase(record.get("phase", ""))
        except ValueError:
            return None
        txn = record.get("txn")
        if not isinstance(txn, str) or not txn:
            return None
        values = {name: record.get(name) for name in _TWOPC_FIELDS if name not in ("phase", "txn")}
        values["vote"] = _member(Vote, values["vote"])
        values["decision"] = _member(Decision, values["decision"])
        banks = values["banks"]
        values["banks"] = [str(b) for b in banks] if isinstance(banks, list) else None
        return cls(phase, txn, **values)


_TWOPC_FIELDS = tuple(f.name for f in fields(TwoPc))


E = TypeVar("E", bound=StrEnum)


def _member(enum: type[E], value: object) -> E | None:
    try:
        return enum(value) if isinstance(value, str) else None
    except ValueError:
        return None


def rpc(method: str, code: str, ms: float, level: str, **noted: object) -> None:
    """One line per unary call; `noted` are the facts the call's wrappers and handler
    attached (user, role, txn, txns, amount_cents), never a request body."""
    jsonlog.emit(Event.RPC, level=level, method=method, code=code, ms=ms, **noted)
