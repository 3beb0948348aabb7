"""A bank's health check and its breaker (a scripted health stub and a fixed clock; the real
processes are tested in tests/test_breakers.py): a check that finds the bank down or not serving
opens the breaker at once, one slow answer on a busy host does not, HEALTH_MISSES in a row do."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2

from backend.gateway.breaker import HEALTH_MISSES, Breaker, BreakerConfig, BreakerState, check_health

SERVING = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
NOT_SERVING = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)


def failed(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata())


class ScriptedHealth:
    """Answers (or raises) what it is given, in order."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def Check(self, request, timeout):  # noqa: N802 (the stub's method name)
        self.asked += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def breaker() -> tuple[Breaker, list[str]]:
    why: list[str] = []
    b = Breaker("BankA", BreakerConfig(), lambda _bank, _was, _now, reason: why.append(reason), clock=lambda: 0.0)
    return b, why


@pytest.mark.parametrize(
    "answer, reason",
    [(failed(grpc.StatusCode.UNAVAILABLE), "health check: UNAVAILABLE"), (NOT_SERVING, "health check: NOT_SERVING")],
)
async def test_a_check_that_finds_the_bank_down_opens_at_once(answer, reason):
    b, why = breaker()
    stub = ScriptedHealth(answer)
    await check_health(stub, b)
    assert b.state == BreakerState.OPEN and why == [reason] and stub.asked == 1


async def test_one_slow_answer_is_asked_again_and_is_not_a_failing_bank():
    b, why = breaker()
    for _ in range(3):
        stub = ScriptedHealth(*[failed(grpc.StatusCode.DEADLINE_EXCEEDED)] * (HEALTH_MISSES - 1), SERVING)
        await check_health(stub, b)
        assert stub.asked == HEALTH_MISSES
    assert b.state == BreakerState.CLOSED and why == [] and b.allow()


async def test_checks_missed_in_a_row_open_it():
    b, why = breaker()
    stub = ScriptedHealth(*[failed(grpc.StatusCode.DEADLINE_EXCEEDED)] * HEALTH_MISSES)
    await check_health(stub, b)
    assert b.state == BreakerState.OPEN and not b.allow()
    assert len(why) == 1 and f"{HEALTH_MISSES} times in a row" in why[0]
