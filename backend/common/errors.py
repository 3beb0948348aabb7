"""Refusals a caller can act on, as exceptions: each names its gRPC status code.

Handlers, stores and ledgers raise them; one place turns them into the status a
client sees (backend/common/interceptors.py, the outermost server interceptor).
A message says what was wrong and what to do, and never holds a secret.
"""

from __future__ import annotations

import grpc

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
    code = grpc.StatusCode.INTERNAL


class InvalidInput(DomainError, ValueError):
    """Malformed input: a field out of its bounds (backend/common/limits.py)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DomainError):
    """The same idempotency key is still in flight: retry shortly."""

    code = grpc.StatusCode.ABORTED


class Unavailable(DomainError):
    """A bank (or the gateway) did not answer; nothing happened: retry."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(DomainError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
