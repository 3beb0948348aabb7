"""A server's interceptors run as one chain per method (OncePerMethod), while what they
check still runs on every call, from that call's own metadata."""

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from backend.common.errors import PermissionDenied
from backend.common.interceptors import LoggingInterceptor, OncePerMethod, checked


class Counting(grpc.aio.ServerInterceptor):
    """Counts its own runs; refuses a call whose metadata says deny."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    async def intercept_service(self, continuation, details):
        self.runs.append(details.method)
        handler = await continuation(details)

        async def check(request, context) -> None:
            if dict(context.invocation_metadata() or ()).get("deny"):
                raise PermissionDenied("denied by the test")

        return checked(handler, check)


async def test_the_chain_runs_once_per_method_and_its_checks_on_every_call():
    counting = Counting()
    server = grpc.aio.server(interceptors=[OncePerMethod([LoggingInterceptor(), counting])])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(3):
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Check(health_pb2.HealthCheckRequest(), metadata=(("deny", "1"),), timeout=5)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # checked on this call, not cached
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary("/no.such.Service/Method")(b"", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert counting.runs == ["/grpc.health.v1.Health/Check", "/no.such.Service/Method"]
    finally:
        await server.stop(None)
