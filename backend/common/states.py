"""States and outcomes, one definition each.

The members are the very strings written to SQLite, to JSON log lines and to
`--json` output (a StrEnum member is its value), so every reader and writer
names them from here and none spells them out.
"""

from __future__ import annotations

from enum import StrEnum


class Decision(StrEnum):
    """The gateway's record of a transaction: PREPARING until decided, then
    COMMIT or ABORT, written once and never changed."""

    PREPARING = "PREPARING"
    COMMIT = "COMMIT"
    ABORT = "ABORT"


class Outcome(StrEnum):
    """What a decided payment means to its client."""

    SUCCEEDED = "SUCCEEDED"  # committed
    DECLINED = "DECLINED"  # a bank refused it for a business reason: final
    RETRYABLE = "RETRYABLE"  # aborted before anything the client must see: the key is free again


class LedgerState(StrEnum):
    """A transaction at a bank: PREPARED (voted YES, holds funds), then
    COMMITTED or ABORTED, once."""

    PREPARED = "PREPARED"
    COMMITTED = "COMMITTED"
    ABORTED = "ABORTED"


class Refusal(StrEnum):
    """Why a bank votes NO: the names of the proto enum strife.v1.Refusal."""

    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    ALREADY_ABORTED = "ALREADY_ABORTED"  # aborted here before the Prepare arrived


class PaymentStatus(StrEnum):
    """A payment as a client sees it: the gateway's answer, or what became of it
    in the client's outbox."""

    SUCCEEDED = "SUCCEEDED"
    DECLINED = "DECLINED"
    PENDING = "PENDING"  # still in two-phase commit
    UNSPECIFIED = "UNSPECIFIED"
    QUEUED = "QUEUED"  # in the outbox, to be sent again under its key
    REJECTED = "REJECTED"  # refused for good (a final error)
    EXPIRED = "EXPIRED"  # too old to send again

    @property
    def final(self) -> bool:
        return self in (PaymentStatus.SUCCEEDED, PaymentStatus.DECLINED, PaymentStatus.REJECTED, PaymentStatus.EXPIRED)


class ProcessState(StrEnum):
    """A supervised server process."""

    STARTING = "starting"
    SERVING = "serving"
    FROZEN = "frozen"  # SIGSTOP
    OFFLINE = "offline"  # killed on purpose
    STOPPED = "stopped"  # stopped on purpose
    CRASHED = "crashed"  # exited on its own
