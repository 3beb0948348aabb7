"""Abuse of the TLS ports below gRPC, with raw sockets on 127.0.0.1: garbage bytes, an
HTTP/1.1 request, the HTTP/2 preface in clear text, a TLS handshake without a client
certificate, connections that never say anything, and many of them at once. Each such
connection is closed by the server without an answer, and the servers keep serving."""

from __future__ import annotations

import asyncio
import os
import random
import ssl

import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backend.api import strife_pb2 as pb
from backend.common.serve import SERVER_OPTIONS
from tests.stack import start_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLOSE_WITHIN_S = 5.0
HANDSHAKE_TIMEOUT_S = dict(SERVER_OPTIONS)["grpc.server_handshake_timeout_ms"] / 1000
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame
# HEADERS for POST /strife.v1.Gateway/Balance, literal fields without indexing or Huffman
_hdrs = b"".join(
    b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v
    for k, v in (
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/strife.v1.Gateway/Balance"),
        (b":authority", b"127.0.0.1"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    )
)
H2_HEADERS = len(_hdrs).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + _hdrs


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory, certs_dir):
    s = await start_stack(tmp_path_factory.mktemp("transport"), certs_dir)
    try:
        yield s
    finally:
        await s.close()


def ports(stack) -> dict[str, int]:
    return {"gateway": stack.cfg.gateway_port, **stack.cfg.bank_ports}


async def still_serving(stack) -> None:
    """Health says SERVING everywhere and real calls through the gateway to a bank work."""
    for name in stack.cfg.bank_ports:
        await stack.bank(name).ListAccounts(pb.ListAccountsRequest(), timeout=5)
    health = health_pb2_grpc.HealthStub(stack.channel(stack.cfg.gateway_address, "client"))
    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    gw, md = await stack.login("bob")
    balance = await gw.Balance(pb.BalanceRequest(), metadata=md, timeout=5)
    assert balance.accounts[0].reachable


async def read_until_closed(reader: asyncio.StreamReader, timeout_s: float = CLOSE_WITHIN_S) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not)."""
    got = b""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                chunk = await reader.read(65536)
            except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
                return got
            if not chunk:
                return got
            got += chunk


async def send_and_expect_close(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        try:
            writer.write(payload)
            await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            return b""
        return await read_until_closed(reader)
    finally:
        writer.close()


PLAINTEXT = {
    "random-bytes": random.Random(4).randbytes(4096),
    "zeros": b"\x00" * 2048,
    "http1": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: abuse\r\n\r\n",
    "http1-upgrade-h2c": (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    ),
    "h2-preface-cleartext": H2_PREFACE + H2_SETTINGS + H2_HEADERS,
    # a TLS record header announcing a huge handshake message, then garbage
    "tls-record-lie": b"\x16\x03\x01\xff\xff" + os.urandom(512),
}


@pytest.mark.parametrize("kind", list(PLAINTEXT))
async def test_cleartext_garbage_is_closed_and_servers_keep_serving(stack, kind):
    for name, port in ports(stack).items():
        answer = await send_and_expect_close(port, PLAINTEXT[kind])
        # at most a TLS alert; never an HTTP or HTTP/2 answer, never a gRPC status
        assert not answer.startswith(b"HTTP/"), (name, answer[:80])
        assert b"grpc-status" not in answer and b"\x00\x00\x00\x04" not in answer[:9], (name, answer[:80])
        assert len(answer) < 64, (name, answer[:80])
    await still_serving(stack)


def _tls_context(certs_dir, role: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs_dir / "ca.crt"))
    ctx.set_alpn_protocols(["h2"])
    if role is not None:
        ctx.load_cert_chain(certs_dir / f"role-{role}.crt", certs_dir / f"role-{role}.key")
    return ctx


async def test_tls_without_a_client_certificate_gets_no_http2(stack):
    """The handshake may even finish on the client's side (TLS 1.3 checks the client's
    certificate last), but the server then sends an alert and closes: no HTTP/2 frame
    ever comes back, however the client goes on."""
    ctx = _tls_context(stack.cfg.certs_dir, role=None)
    for name, port in ports(stack).items():
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"), CLOSE_WITHIN_S
            )
        except (ssl.SSLError, ConnectionResetError):
            continue  # refused during the handshake
        try:
            try:
                writer.write(H2_PREFACE + H2_SETTINGS + H2_HEADERS)
                await writer.drain()
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                continue
            assert await read_until_closed(reader) == b"", name
        finally:
            writer.close()
    await still_serving(stack)


async def test_the_same_raw_client_with_a_certificate_does_get_http2(stack):
    """Control for the test above: with our client certificate the same raw bytes get
    the server's HTTP/2 SETTINGS, so the refusal above really is about the certificate."""
    ctx = _tls_context(stack.cfg.certs_dir, role="client")
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", stack.cfg.gateway_port, ssl=ctx, server_hostname="127.0.0.1"
    )
    try:
        writer.write(H2_PREFACE + H2_SETTINGS)
        await writer.drain()
        frame = await asyncio.wait_for(reader.readexactly(9), CLOSE_WITHIN_S)
        assert frame[3] == 0x04, frame  # SETTINGS
    finally:
        writer.close()


async def test_connections_that_say_nothing_do_not_block_anyone(stack):
    """200 connections opened at once (to the gateway and to a bank) that never send a
    byte, and 50 that stop halfway through a TLS handshake: real calls still work, and
    the servers close the silent ones after their handshake timeout."""
    held = []
    try:
        for i in range(200):
            port = stack.cfg.gateway_port if i % 2 else stack.cfg.bank_ports["BankA"]
            held.append(await asyncio.open_connection("127.0.0.1", port))
        for _ in range(50):  # the first bytes of a ClientHello, then silence
            reader, writer = await asyncio.open_connection("127.0.0.1", stack.cfg.gateway_port)
            writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            held.append((reader, writer))
        await asyncio.wait_for(still_serving(stack), 15)
        # a payment, end to end, while they are all still open
        gw, md = await stack.login("alice")
        paid = await gw.Pay(
            pb.PayRequest(
                idempotency_key="transport-abuse-1",
                amount_cents=100,
                to=pb.AccountRef(bank="BankB", account_id="B-2001"),
                **{"from": pb.AccountRef(bank="BankA", account_id="A-1001")},
            ),
            metadata=md,
            timeout=10,
        )
        assert paid.status == pb.SUCCEEDED
        # and the servers hang up on them once the handshake timeout (5 s) passes,
        # instead of keeping each socket for gRPC's default 120 s
        leftovers = await asyncio.gather(*(read_until_closed(r, HANDSHAKE_TIMEOUT_S + 5) for r, _ in held))
        assert all(len(x) < 64 for x in leftovers)
    finally:
        for _, writer in held:
            writer.close()
    await still_serving(stack)


async def test_many_garbage_connections_at_once(stack):
    """200 concurrent connections spraying random bytes at every port, then a real call."""
    rng = random.Random(7)
    targets = list(ports(stack).values())
    payloads = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(200)]
    answers = await asyncio.gather(
        *(send_and_expect_close(targets[i % len(targets)], p) for i, p in enumerate(payloads)), return_exceptions=True
    )
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert not failures, failures[:3]
    assert all(len(a) < 64 for a in answers)
    await still_serving(stack)
