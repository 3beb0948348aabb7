"""Refusals a caller can act on, as exceptions: each names its gRPC status code.

Handlers, stores and ledgers raise them; one place turns them into the status a
client sees (backend/common/interceptors.py, the outermost server interceptor).
A message says what was wrong and what to do, and never holds a secret.
"""

from __future__ import annotations

import grpc

from backend.api import strife_pb2 as pb

# What a client may ever see (README "Status codes"). INTERNAL means a bug here:
# the call is refused and the server logs the exception; nothing else leaks out.
CLIENT_CODES = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
    }
)


class DomainError(Exception):
    """A refusal: its status code, a stable reason for programs (pb.Errors.Reason; the
    ErrorInfo a client gets), and where they apply the field that is wrong (BadRequest)
    and when to retry (RetryInfo). Each class has the usual reason and delay of its code."""

    code = grpc.StatusCode.INTERNAL
    reason: int = pb.Errors.INTERNAL_ERROR
    retry_after_s: float | None = None

    def __init__(
        self, message: str = "", *, reason: int | None = None, retry_after_s: float | None = None, field: str = ""
    ) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s
        self.field = field

    @property
    def reason_name(self) -> str:
        return pb.Errors.Reason.Name(self.reason)


class InvalidInput(DomainError, ValueError):
    """Malformed input: a field out of its bounds (backend/common/limits.py)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = pb.Errors.INVALID_FIELD


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = pb.Errors.TOKEN_INVALID


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = pb.Errors.NOT_YOUR_ACCOUNT


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    reason = pb.Errors.UNKNOWN_ACCOUNT


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = pb.Errors.USERNAME_TAKEN


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = pb.Errors.IDEMPOTENCY_KEY_REUSED


class Aborted(DomainError):
    """The same idempotency key is still in flight: retry shortly."""

    code = grpc.StatusCode.ABORTED
    reason = pb.Errors.IDEMPOTENCY_KEY_IN_FLIGHT
    retry_after_s = 0.25


class Unavailable(DomainError):
    """A bank (or the gateway) did not answer; nothing happened: retry."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = pb.Errors.BANK_UNAVAILABLE
    retry_after_s = 1.0


class DeadlineExceeded(DomainError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = pb.Errors.BANK_TIMEOUT


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = pb.Errors.LOGIN_LOCKED
