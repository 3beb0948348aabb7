"""The one error path (backend/common/interceptors.py LoggingInterceptor), in process:
a DomainError becomes its status code; anything else becomes INTERNAL with a message
that names no internals, and is logged."""

from __future__ import annotations

import asyncio
import io
import json
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backend.common import jsonlog
from backend.common.errors import CLIENT_CODES, DeadlineExceeded, DomainError, NotFound
from backend.common.events import Event
from backend.common.interceptors import LoggingInterceptor
from backend.gateway.service import REPLY_MARGIN_S, time_left_s

pytestmark = pytest.mark.usefixtures("both_engines")  # each test on SQLite and on PostgreSQL


class Health(health_pb2_grpc.HealthServicer):
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def Check(self, request, context):
        raise self.error


async def call_with(error: BaseException, log: io.StringIO) -> grpc.aio.AioRpcError:
    """One call that raises `error` in its handler; the call's log lines go to `log`."""
    jsonlog.flush()  # lines an earlier test left go to its own sink
    jsonlog.configure("test", out=log)
    server = grpc.aio.server(interceptors=[LoggingInterceptor()])
    health_pb2_grpc.add_HealthServicer_to_server(Health(error), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        # the client may hear the status before the server's wrapper has written its line
        for _ in range(200):
            jsonlog.flush()
            if any(r["event"] == Event.RPC for r in records(log)):
                break
            await asyncio.sleep(0.01)
    finally:
        await server.stop(None)
        jsonlog.flush()
        jsonlog.configure("test", out=sys.stdout)
    return raised.value


def records(log: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in log.getvalue().splitlines()]


@pytest.mark.parametrize("error_class", DomainError.__subclasses__())
async def test_every_domain_error_becomes_its_documented_code(error_class):
    log = io.StringIO()
    answer = await call_with(error_class("what went wrong, and what to do"), log)
    assert answer.code() is error_class.code and answer.code() in CLIENT_CODES
    assert answer.details() == "what went wrong, and what to do"
    [rpc] = [r for r in records(log) if r["event"] == Event.RPC]
    assert rpc["code"] == error_class.code.name


async def test_an_unexpected_exception_is_internal_and_logged_not_unknown():
    log = io.StringIO()
    answer = await call_with(ValueError("Set of Tasks/Futures is empty"), log)
    assert answer.code() is grpc.StatusCode.INTERNAL
    assert "ValueError" not in answer.details() and "Futures" not in answer.details()
    logged = records(log)
    [internal] = [r for r in logged if r["event"] == Event.INTERNAL_ERROR]
    assert "ValueError: Set of Tasks/Futures is empty" in internal["msg"]
    [rpc] = [r for r in logged if r["event"] == Event.RPC]
    assert rpc["code"] == "INTERNAL" and rpc["level"] == "warning"


async def test_a_subclass_keeps_its_code():
    log = io.StringIO()
    assert (await call_with(NotFound("no account X at BankA"), log)).code() is grpc.StatusCode.NOT_FOUND


class Deadline:
    """A servicer context that only knows how long its caller still waits."""

    def __init__(self, remaining_s: float | None) -> None:
        self.remaining_s = remaining_s

    def time_remaining(self) -> float | None:
        return self.remaining_s


def test_work_for_a_call_is_bounded_by_the_callers_deadline():
    assert time_left_s(Deadline(None), 2.0) == 2.0  # no deadline: our own bound
    assert time_left_s(Deadline(30.0), 2.0) == 2.0
    assert time_left_s(Deadline(0.3), 2.0) == pytest.approx(0.3 - REPLY_MARGIN_S)
    with pytest.raises(DeadlineExceeded):
        time_left_s(Deadline(REPLY_MARGIN_S / 2), 2.0)
