"""The one error type of the client library."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

# Status codes after which a queued payment stays queued and is sent again
# (same idempotency key). Everything else is a final answer.
RETRYABLE_CODES = frozenset(
    {
        "UNAVAILABLE",  # gateway (or a bank behind it) down
        "DEADLINE_EXCEEDED",  # no answer in time: it may or may not have happened
        "ABORTED",  # the same key is still in flight at the gateway
        "RESOURCE_EXHAUSTED",  # rate limited
        "UNKNOWN",
        "INTERNAL",
        "UNAUTHENTICATED",  # token expired or revoked: needs a fresh login
        "CANCELLED",
    }
)


GATEWAY_UNREACHABLE = "GATEWAY_UNREACHABLE"  # the client's own reason: no gateway answered at all


class ClientError(Exception):
    """A failed client operation. `code` is a gRPC status code name ("INVALID_ARGUMENT",
    "UNAVAILABLE", ...); `reason` the stable reason the gateway gave in its status details
    (an Errors.Reason name such as "BREAKER_OPEN", or GATEWAY_UNREACHABLE when no gateway
    answered; "" if none); `retry_after_s` the delay it asked for (RetryInfo), if any.
    The message never holds a secret."""

    def __init__(self, code: str, message: str, reason: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return (type(self), (self.code, self.message, self.reason, self.retry_after_s))

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    def to_json(self) -> dict:
        return {"code": self.code, "message": self.message, "reason": self.reason, "retry_after_s": self.retry_after_s}

    @classmethod
    def from_rpc(cls, exc: grpc.aio.AioRpcError) -> ClientError:
        code = exc.code()
        name = code.name if code is not None else "UNKNOWN"
        details = exc.details() or name.lower().replace("_", " ")
        reason, retry_after_s = _status_details(exc)
        if name == "UNAVAILABLE" and not reason:  # refused by no server of ours: the transport failed
            return cls(name, "gateway unreachable", GATEWAY_UNREACHABLE)
        return cls(name, details, reason, retry_after_s)

    def __repr__(self) -> str:
        return f"ClientError({self.code!r}, {self.message!r})"


def _status_details(exc: grpc.aio.AioRpcError) -> tuple[str, float | None]:
    """(ErrorInfo reason, RetryInfo delay) of a refusal's google.rpc status details."""
    try:
        status = rpc_status.from_call(exc)
    except ValueError:  # details that contradict the call's code: ignore them
        return "", None
    reason, retry_after_s = "", None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason[:64]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            delay = error_details_pb2.RetryInfo()
            detail.Unpack(delay)
            retry_after_s = min(3600.0, max(0.0, delay.retry_delay.seconds + delay.retry_delay.nanos / 1e9))
    return reason, retry_after_s
