"""The one error type of the client library."""

from __future__ import annotations

import grpc

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


class ClientError(Exception):
    """A failed client operation. `code` is a gRPC status code name
    ("INVALID_ARGUMENT", "UNAVAILABLE", ...); the message never holds a secret."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self):
        return (type(self), (self.code, self.message))

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    def to_json(self) -> dict:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_rpc(cls, exc: grpc.aio.AioRpcError) -> ClientError:
        code = exc.code()
        name = code.name if code is not None else "UNKNOWN"
        details = exc.details() or name.lower().replace("_", " ")
        if name == "UNAVAILABLE" and "failed to connect" in details.lower():
            details = "gateway unreachable"
        return cls(name, details)

    def __repr__(self) -> str:
        return f"ClientError({self.code!r}, {self.message!r})"
