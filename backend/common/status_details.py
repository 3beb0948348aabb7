"""A refusal's google.rpc status details: what programs read instead of the message.

Every refusal carries an ErrorInfo (domain "strife.v1", reason = the name of a
pb.Errors.Reason); an INVALID_ARGUMENT also a BadRequest naming the field that is
wrong; a refusal worth retrying (UNAVAILABLE, ABORTED, a login lockout) a RetryInfo
with the delay. They travel in the `grpc-status-details-bin` trailer (grpcio-status).
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from backend.common.errors import DomainError

DOMAIN = "strife.v1"


def trailing_metadata(exc: DomainError, message: str) -> tuple:
    """The trailer that carries `exc`'s details (message: what the status says in words)."""
    details = [_packed(error_details_pb2.ErrorInfo(reason=exc.reason_name, domain=DOMAIN))]
    if exc.retry_after_s is not None:
        delay_ns = max(0, round(exc.retry_after_s * 1e9))
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=delay_ns // 10**9, nanos=delay_ns % 10**9)
        )
        details.append(_packed(retry))
    if exc.code is grpc.StatusCode.INVALID_ARGUMENT:
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field or "request", description=message)
        details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
    status = status_pb2.Status(code=exc.code.value[0], message=message, details=details)
    return rpc_status.to_status(status).trailing_metadata


def _packed(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
