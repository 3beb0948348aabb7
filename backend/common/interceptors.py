"""Interceptors shared by every server: call logging (and the one error path) and
certificate roles.

Each interceptor wraps the unary handler it is given, so the wrapper sees the
request context (certificate, metadata) and the outcome. The first interceptor
in a server's list is the outermost wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.descriptor_pb2 import MethodOptions

from backend.api import strife_pb2 as pb
from backend.common import events, jsonlog, metrics, status_details, tls
from backend.common.errors import DomainError, InvalidInput, PermissionDenied
from backend.common.events import Event

# Per-call facts that inner wrappers and handlers add for the logging wrapper.
CALL: contextvars.ContextVar[dict] = contextvars.ContextVar("strife_call")

T = TypeVar("T")
Check = Callable[[object, grpc.aio.ServicerContext], Awaitable[None]]


async def _items(result):
    """What a server-stream handler gave: an async generator's items, or nothing from a
    coroutine that writes its items with context.write (the health service's Watch)."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    else:
        await result


def checked(handler: grpc.RpcMethodHandler | None, check: Check):
    """`handler` with `check(request, context)` awaited before it runs (it raises to refuse
    the call), for unary calls and for streams of answers, with one request or a stream of them."""
    if handler is None:
        return None
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request, context):
            await check(request, context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    for inner_stream, make in (
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    ):
        if inner_stream is not None:
            # A stream is checked when it opens, before its first item: for a stream of
            # requests, `check` gets their iterator (the checks look at the caller, not at
            # what it sends).
            async def stream(request, context, inner_stream=inner_stream):
                await check(request, context)
                async for item in _items(inner_stream(request, context)):
                    yield item

            return make(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    raise NotImplementedError("a client-streaming method: give it a checked wrapper before serving it")


class _Undecodable:
    """What a request that does not parse as its message type becomes, so the call
    can be refused with INVALID_ARGUMENT instead of the runtime's UNKNOWN."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer):
    if deserializer is None:
        return None

    def parse(raw: bytes):
        try:
            return deserializer(raw)
        except Exception as exc:  # google.protobuf.message.DecodeError and kin
            return _Undecodable(exc)

    return parse


def note(**facts) -> None:
    """Attach facts (user, txn, amount_cents, …) to the current call's log line."""
    call = CALL.get(None)
    if call is not None:
        call.update(facts)


class LoggingInterceptor(grpc.aio.ServerInterceptor):
    """One JSON line per call (a stream's when it ends; serve_message's per message of a
    stream that carries calls): method, user, code, ms. Never the request body.

    Outermost in every server, so it is the one error path: a DomainError raised
    by any inner wrapper or handler becomes its status code here, and any other
    exception becomes INTERNAL (logged with its type, never shown to the caller).
    It also refuses a request body that does not parse (INVALID_ARGUMENT). `in_flight`
    counts the calls under way (a gateway replica reports it as its load)."""

    in_flight = 0

    @contextlib.asynccontextmanager
    async def _call(self, method: str, request, context, unary: bool):
        """One call's log line, metrics and error mapping, around its handler."""
        call: dict = {}
        CALL.set(call)
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        if unary:  # a stream may last hours: it is not load
            self.in_flight += 1
            metrics.RPC_IN_FLIGHT.inc()
        try:
            if isinstance(request, _Undecodable):
                raise InvalidInput(f"malformed request: {str(request.error)[:200]}")
            yield call
        except DomainError as exc:
            code = exc.code
            message = str(exc)
            await context.abort(code, message, status_details.trailing_metadata(exc, message))
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:
            code = context.code()
            if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:  # not an abort: a bug
                code = grpc.StatusCode.INTERNAL
                message = bug(method, exc, call)
                await context.abort(code, message, status_details.trailing_metadata(DomainError(), message))
            raise
        finally:
            if unary:
                self.in_flight -= 1
                metrics.RPC_IN_FLIGHT.dec()
            if code is grpc.StatusCode.OK and isinstance(context.code(), grpc.StatusCode):
                code = context.code()
            _served(method, code, started, call)

    async def intercept_service(self, continuation, details):
        method = details.method
        handler = await continuation(details)
        if handler is None:
            return None
        if handler.unary_unary is not None:

            async def unary(request, context):
                async with self._call(method, request, context, unary=True):
                    return await handler.unary_unary(request, context)
                raise AssertionError("unreachable: context.abort raises")

            make = grpc.unary_unary_rpc_method_handler
            behavior: object = unary
        elif handler.unary_stream is not None:

            async def stream(request, context):
                async with self._call(method, request, context, unary=False) as call:
                    sent = 0
                    try:
                        async for item in _items(handler.unary_stream(request, context)):
                            yield item
                            sent += 1
                    finally:
                        call["sent"] = sent

            make = grpc.unary_stream_rpc_method_handler
            behavior = stream
        elif handler.stream_stream is not None:

            async def bidi(requests, context):
                async with self._call(method, None, context, unary=False) as call:
                    sent = 0
                    try:
                        async for item in _items(handler.stream_stream(_parsed(requests), context)):
                            yield item
                            sent += 1
                    finally:
                        call["sent"] = sent

            make = grpc.stream_stream_rpc_method_handler
            behavior = bidi
        else:
            return handler
        # The outermost wrapper: its deserializer is the one the server runs.
        return make(
            behavior,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


async def _parsed(requests):
    """A stream's messages; one that does not parse ends the stream with INVALID_ARGUMENT
    (it has no id to answer, and what follows it cannot be trusted)."""
    async for request in requests:
        if isinstance(request, _Undecodable):
            raise InvalidInput(f"malformed message: {str(request.error)[:200]}")
        yield request


def bug(method: str, exc: Exception, call: dict | None = None) -> str:
    """An exception nobody expected (a bug), being handled: log its traceback, note it on the
    call's log line, and return what the caller may be told (never the exception's words)."""
    if call is not None:
        call["msg"] = f"{type(exc).__name__}: {exc}"[:500]
    jsonlog.emit(Event.INTERNAL_ERROR, level="error", method=method, msg=traceback.format_exc()[-2000:])
    return "internal error: the server logged it; try again later"


def _served(method: str, code: grpc.StatusCode, started: float, call: dict) -> None:
    """A served call's latency metric and log line."""
    latency = _LATENCY.get((method, code))
    if latency is None:  # bounded: the methods a server serves, times the status codes
        latency = _LATENCY[method, code] = metrics.RPC_SECONDS.labels(method, code.name)
    latency.observe(time.perf_counter() - started)
    events.rpc(method, code.name, round((time.perf_counter() - started) * 1000, 2), _level(method, code), **call)


class Refused(NamedTuple):
    """How a message of a stream was refused: what its own unary call would have ended with."""

    code: grpc.StatusCode
    message: str


async def serve_message(method: str, handle: Callable[[], Awaitable[T]], **facts: object) -> T | Refused:
    """One message of a stream served as the unary call `method` would be: its own log line
    and latency, the facts its handler notes, and the same one error path (a DomainError is
    its code; any other exception is INTERNAL, logged, never shown). Run it in a task of its
    own: the call's facts live in the task's context."""
    call: dict = dict(facts)
    CALL.set(call)
    started = time.perf_counter()
    code = grpc.StatusCode.OK
    metrics.RPC_IN_FLIGHT.inc()
    try:
        return await handle()
    except DomainError as exc:
        code = exc.code
        return Refused(code, str(exc))
    except Exception as exc:
        code = grpc.StatusCode.INTERNAL
        return Refused(code, bug(method, exc, call))
    finally:
        metrics.RPC_IN_FLIGHT.dec()
        _served(method, code, started, call)


class OncePerMethod(grpc.aio.ServerInterceptor):
    """A server's interceptors as one, their chain run once per method, not once per call.

    Each interceptor here wraps a method's handler in functions that do their work at call
    time (from the call's own context), so the wrapped handler is the same for every call of
    a method: it is kept, and a call costs one dictionary lookup instead of a coroutine and
    new wrappers per interceptor. Bounded: only the methods the server serves are kept (an
    unknown method's None is not)."""

    def __init__(self, chain: list[grpc.aio.ServerInterceptor]) -> None:
        self.chain = chain
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, details):
        handler = self._handlers.get(details.method)
        if handler is None:
            handler = await self._through(0, continuation, details)
            if handler is not None:
                self._handlers[details.method] = handler
        return handler

    async def _through(self, i: int, continuation, details):
        if i == len(self.chain):
            return await continuation(details)
        return await self.chain[i].intercept_service(lambda d: self._through(i + 1, continuation, d), details)


_LATENCY: dict[tuple[str, grpc.StatusCode], Any] = {}  # the histogram's child per (method, code)


def _level(method: str, code: grpc.StatusCode) -> str:
    """Failed calls are warnings; health probes that pass are debug (one per second per
    process from the control room would drown everything else)."""
    if code is not grpc.StatusCode.OK:
        return "warning"
    return "debug" if method.startswith("/grpc.health.v1.Health/") else "info"


def method_options(*services: ServiceDescriptor) -> dict[str, MethodOptions]:
    """{"/strife.v1.Bank/PrepareBatch": its options, ...} for every method of `services`."""
    return {f"/{s.full_name}/{m.name}": m.GetOptions() for s in services for m in s.methods}


def role_rules(*services: ServiceDescriptor) -> dict[str, frozenset[str]]:
    """Who may call each method, from the `(strife.v1.roles)` options in proto/strife.proto."""
    return {
        name: frozenset(options.Extensions[pb.roles])  # type: ignore[index]  # protobuf's stubs miss extensions
        for name, options in method_options(*services).items()
        if options.Extensions[pb.roles]  # type: ignore[index]
    }


class RoleInterceptor(grpc.aio.ServerInterceptor):
    """Refuses a call unless the caller's certificate role is allowed for the method.

    `rules` maps a method's full name ("/strife.v1.Bank/PrepareBatch") to its roles
    (see role_rules); a method not listed is open to every certificate from our CA
    (health checks).
    """

    def __init__(self, rules: dict[str, frozenset[str]]) -> None:
        self.rules = rules

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        allowed = self.rules.get(details.method)
        if allowed is None:
            return handler
        method = details.method.rsplit("/", 1)[-1]

        async def check(request, context) -> None:
            role = tls.peer_role(context)
            note(role=role)
            if role not in allowed:
                raise PermissionDenied(
                    f"{method} is not allowed for a certificate with role {role or 'unknown'!r}; "
                    f"allowed: {', '.join(sorted(allowed))}",
                    reason=pb.Errors.ROLE_NOT_ALLOWED,
                )

        return checked(handler, check)
