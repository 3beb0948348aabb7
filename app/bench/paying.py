"""Clients paying in a loop from this process, for the scenarios that time payments around an
event (a bank killed, idle streams opened): each result with when it started and its answer.
The load drivers (app/bench/driver.py) are for throughput; this is for what happens when."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass

import grpc

from app.bench.stack import OwnStack
from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.client.errors import ClientError
from backend.common import tls

PAY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Paid:
    started_s: float  # since the loop began
    latency_ms: float
    code: str  # "OK" or a status code name
    reason: str  # the refusal's ErrorInfo reason, if any
    banks: frozenset[str]  # the payer's and the payee's


async def logins(stack: OwnStack, users: list, channels: list[grpc.aio.Channel]) -> list[tuple]:
    """(stub, metadata, user) for each user, on its own channel."""
    out = []
    for user in users:
        channel = tls.secure_channel(stack.gateway.split(",")[0], stack.certs_dir, "client")
        channels.append(channel)
        stub = pb_grpc.GatewayStub(channel)
        answer = await stub.Login(pb.LoginRequest(username=user.username, password=user.password), timeout=30)
        out.append((stub, (("authorization", f"Bearer {answer.token}"),), user))
    return out


async def pay_for(sessions: list[tuple], payees: list, duration_s: float, seed: int = 1) -> list[Paid]:
    """Every session pays random payees, one payment at a time, for duration_s."""
    rng = random.Random(seed)
    results: list[Paid] = []
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def client(stub, metadata, user) -> None:
        while loop.time() - began < duration_s:
            payee, request = random_payment(rng, user, payees)
            at_s = loop.time() - began
            started = time.perf_counter()
            code, reason = "OK", ""
            try:
                await stub.Pay(request, metadata=metadata, timeout=PAY_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                reason = ClientError.from_rpc(exc).reason
            results.append(
                Paid(
                    started_s=at_s,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    code=code,
                    reason=reason,
                    banks=frozenset({user.bank, payee.bank}),
                )
            )

    await asyncio.gather(*(client(*s) for s in sessions))
    return results


def random_payment(rng: random.Random, user, payees: list) -> tuple:
    """(payee, a PayRequest under a fresh key) of 1 to 100 cents from `user` to another account."""
    payee = rng.choice([p for p in payees if p.account_id != user.account_id])
    request = pb.PayRequest(
        idempotency_key=str(uuid.uuid4()),
        to=pb.AccountRef(bank=payee.bank, account_id=payee.account_id),
        amount_cents=1 + rng.randrange(100),
        **{"from": pb.AccountRef(bank=user.bank, account_id=user.account_id)},
    )
    return payee, request


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)
