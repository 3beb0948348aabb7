"""Property-based abuse of the gateway and bank APIs over real mutual TLS.

Hypothesis throws random and malformed requests (arbitrary unicode, huge strings,
extreme integers, missing fields, random tokens) and raw undecodable bytes at every
method. Whatever it sends:
  - the answer is OK or a deliberate status code, never UNKNOWN/INTERNAL (an unhandled
    exception in a handler) nor UNAVAILABLE/DEADLINE_EXCEEDED (a server that died or hung);
  - a refused request changes no balance and leaves no hold; an accepted one keeps the
    total of money constant and leaves no hold;
  - no answer echoes a long input back, and every error message is short;
  - each server still reports SERVING afterwards.
One stack serves the whole module, so the examples run fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.api import strife_pb2 as pb
from backend.common.limits import MAX_AMOUNT_CENTS
from tests.stack import eventually, start_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

# STRIFE_FUZZ_EXAMPLES=2000 for a longer, randomized campaign; the default is a quick,
# derandomized run, so CI fails on a regression, never on the luck of the draw.
FUZZ = settings(
    max_examples=int(os.environ.get("STRIFE_FUZZ_EXAMPLES", "80")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize="STRIFE_FUZZ_EXAMPLES" not in os.environ,
)

# What a server may answer on purpose. Anything else is a bug.
PROPER = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
MAX_DETAILS = 512  # an error names the problem; it never carries the input back
ECHO_MIN = 300  # an input string this long must not come back in any answer

SERVICES = {name: pb.DESCRIPTOR.services_by_name[name] for name in ("Gateway", "Bank")}
# Unary methods: the fuzzer calls them with raw bytes. The streams have their own tests of bad
# input: WatchPayments in tests/test_watch_payments.py, Bank.Batches (whose batches are
# PrepareBatch and DecideBatch requests, fuzzed here as calls) in tests/test_bank_stream.py.
GATEWAY_METHODS = tuple(m.name for m in SERVICES["Gateway"].methods if not m.server_streaming)
BANK_METHODS = tuple(m.name for m in SERVICES["Bank"].methods if not m.client_streaming)
KNOWN = [
    "",
    "BankA",
    "BankB",
    "BankC",
    "BankZ",
    "A-1001",
    "A-1002",
    "A-1003",
    "B-2001",
    "C-3001",
    "C-3002",
    "bob",
    "alice",
    "carol",
    "dave",
    "nobody",
    "a-long-password",
    "0",
    "-",
    "..",
    "K" * 255,
    "K" * 256,
]

# ------------------------------------------------------------- strategies --

_printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
TEXT = st.one_of(
    st.sampled_from(KNOWN),
    st.text(max_size=40),  # any unicode, no surrogates
    st.text(_printable, min_size=1, max_size=300),
    st.text(min_size=1, max_size=8).map(lambda s: s * 400),  # long, up to ~3-12 KB
    st.from_regex(r"[A-Za-z0-9_.:-]{1,140}", fullmatch=True),  # near the id alphabets
)
INT64 = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(1, 500),
    st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63), MAX_AMOUNT_CENTS, MAX_AMOUNT_CENTS + 1]),
)
# numbers of any size, and "digits" that are not ASCII ('²', '٣')
PAGE_TOKEN = st.one_of(
    TEXT, st.integers(-10, 10**25).map(str), st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=20)
)
INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, 1, 100, 101, 1000, 1001, -1]))


def fields(**strategies):
    """A dict of request fields, each one present or missing."""
    return st.fixed_dictionaries({}, optional=strategies)


REF = st.builds(lambda kw: pb.AccountRef(**kw), fields(bank=TEXT, account_id=TEXT))
REAL_ACCOUNTS = [
    ("BankA", "A-1001"),
    ("BankA", "A-1002"),
    ("BankB", "B-2001"),
    ("BankC", "C-3001"),
    ("BankC", "C-3002"),
    ("BankA", "A-9999"),
    ("BankZ", "Z-1"),
]
REAL_REF = st.sampled_from(REAL_ACCOUNTS).map(lambda t: pb.AccountRef(bank=t[0], account_id=t[1]))

GATEWAY_REQUESTS = {
    "Register": fields(username=TEXT, password=TEXT, account=REF).map(lambda kw: pb.RegisterRequest(**kw)),
    "Login": fields(username=TEXT, password=TEXT).map(lambda kw: pb.LoginRequest(**kw)),
    "Logout": st.just(pb.LogoutRequest()),
    "LinkAccount": fields(account=REF).map(lambda kw: pb.LinkAccountRequest(**kw)),
    "Balance": st.just(pb.BalanceRequest()),
    "Pay": st.one_of(
        fields(idempotency_key=TEXT, to=REF, amount_cents=INT64, **{"from": REF}).map(lambda kw: pb.PayRequest(**kw)),
        # close to a real payment, so some get through validation to the banks
        st.builds(
            lambda key, to, amount, source: pb.PayRequest(
                idempotency_key=key, to=to, amount_cents=amount, **{"from": source}
            ),
            st.one_of(st.uuids().map(str), TEXT),
            st.one_of(REAL_REF, REF),
            st.one_of(st.integers(1, 100_000), INT64),
            st.one_of(st.just(pb.AccountRef()), REAL_REF, REF),
        ),
    ),
    "GetPayment": fields(payment_id=TEXT).map(lambda kw: pb.GetPaymentRequest(**kw)),
    "ListPayments": fields(page_size=INT32, page_token=PAGE_TOKEN).map(lambda kw: pb.ListPaymentsRequest(**kw)),
    "ListGateways": st.just(pb.ListGatewaysRequest()),
}

LEG = fields(account_id=TEXT, delta_cents=INT64).map(lambda kw: pb.Leg(**kw))
REAL_LEG = st.builds(
    lambda a, d: pb.Leg(account_id=a, delta_cents=d),
    st.sampled_from([a for _, a in REAL_ACCOUNTS]),
    st.one_of(st.integers(-5000, 5000), INT64),
)
PREPARE = st.one_of(
    fields(txn_id=TEXT, legs=st.lists(LEG, max_size=20)).map(lambda kw: pb.PrepareRequest(**kw)),
    # well-formed, so some win a YES vote (and are then aborted, as a gateway would)
    st.builds(
        lambda u, legs: pb.PrepareRequest(txn_id=f"fzp-{u}", legs=legs),
        st.uuids(),
        st.lists(REAL_LEG, min_size=1, max_size=3),
    ),
)
# Decisions go to transactions nobody prepared (or to malformed ids): a bank must refuse
# or tombstone them, never move money. Prepares that win a YES are aborted right after.
UNPREPARED_TXN = st.one_of(TEXT.filter(lambda t: not t.startswith("fz")), st.uuids().map(lambda u: f"fzc-{u}"))
DECISION = fields(txn_id=UNPREPARED_TXN, decision=st.integers(-3, 5)).map(lambda kw: pb.DecisionItem(**kw))
BANK_REQUESTS = {
    "PrepareBatch": st.builds(
        lambda ps, ds: pb.PrepareBatchRequest(prepares=ps, decisions=ds),
        st.lists(PREPARE, max_size=4),
        st.lists(DECISION, max_size=2),
    ),
    "DecideBatch": st.lists(DECISION, max_size=4).map(lambda ds: pb.DecideBatchRequest(decisions=ds)),
    "Balance": fields(account_id=TEXT).map(lambda kw: pb.BankBalanceRequest(**kw)),
    "ValidateAccount": fields(account_id=TEXT).map(lambda kw: pb.ValidateAccountRequest(**kw)),
    "ListAccounts": st.just(pb.ListAccountsRequest()),
    "ListTransactions": fields(page_size=INT32, page_token=PAGE_TOKEN).map(lambda kw: pb.ListTransactionsRequest(**kw)),
}

# "bob"/"alice": that user's real session; anything else is sent as the header value.
BAD_TOKEN = st.one_of(
    st.sampled_from([None, "Bearer ", "Bearer", "bearer x", "Basic Ym9iOmJvYg=="]),
    st.text(_printable, max_size=200).map(lambda t: "Bearer " + t),
    st.text(_printable, min_size=1, max_size=8).map(lambda t: "Bearer " + t * 300),
)
# mostly a real session, so most requests get past authentication to the handlers
TOKEN = st.integers(0, 9).flatmap(lambda n: st.sampled_from(["bob", "alice"]) if n < 7 else BAD_TOKEN)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


RAW = st.one_of(
    st.binary(max_size=600),
    st.binary(min_size=1, max_size=16).map(lambda b: b * 200),
    # a length-delimited field of any number holding bytes that are not UTF-8
    st.tuples(st.integers(1, 20), st.binary(min_size=1, max_size=40)).map(
        lambda t: _varint(t[0] << 3 | 2) + _varint(len(t[1]) + 2) + b"\xc3\x28" + t[1]
    ),
    # a truncated or lying length prefix
    st.tuples(st.integers(1, 20), st.integers(0, 2**35)).map(lambda t: _varint(t[0] << 3 | 2) + _varint(t[1]) + b"x"),
    # a valid message followed by garbage
    st.binary(max_size=60).map(lambda b: pb.PayRequest(idempotency_key="k", amount_cents=5).SerializeToString() + b),
)

# ---------------------------------------------------------------- harness --


@dataclass(repr=False)  # hypothesis prints the arguments of a failing example
class Ctx:
    stack: object
    gw_channel: grpc.aio.Channel
    bank_channels: dict
    sessions: dict  # "bob"/"alice" -> metadata

    def __repr__(self) -> str:
        return "ctx"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx(tmp_path_factory, certs_dir):
    stack = await start_stack(tmp_path_factory.mktemp("fuzz"), certs_dir)
    try:
        sessions = {name: (await stack.login(name))[1] for name in ("bob", "alice")}
        yield Ctx(
            stack,
            stack.channel(stack.cfg.gateway_address, "client"),
            {b: stack.channel(stack.cfg.bank_address(b), "gateway") for b in stack.cfg.bank_ports},
            sessions,
        )
    finally:
        await stack.close()


def metadata(c: Ctx, token):
    if token in c.sessions:
        return c.sessions[token]
    return () if token is None else (("authorization", token),)


def raw_call(channel: grpc.aio.Channel, method: str):
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


async def call(channel, method: str, payload: bytes, md=()) -> tuple[grpc.StatusCode, bytes, str]:
    try:
        answer = await raw_call(channel, method)(payload, metadata=md, timeout=10)
        return grpc.StatusCode.OK, answer, ""
    except grpc.aio.AioRpcError as exc:
        return exc.code(), b"", exc.details() or ""


def long_strings(message) -> list[str]:
    """Every string field of `message` (nested too) at least ECHO_MIN characters long."""
    found = []
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        for v in values:
            if isinstance(v, str) and len(v) >= ECHO_MIN:
                found.append(v)
            elif hasattr(v, "ListFields"):
                found += long_strings(v)
    return found


def assert_proper(method: str, code, answer: bytes, details: str, inputs: list[str], allowed=PROPER) -> None:
    assert code in allowed, f"{method} answered {code.name}: {details}"
    assert len(details) <= MAX_DETAILS, f"{method}: a {len(details)}-character error message"
    for text in inputs:
        assert text not in details, f"{method} echoed a {len(text)}-character input in its error"
        assert text.encode() not in answer, f"{method} echoed a {len(text)}-character input in its answer"


async def snapshot(stack) -> tuple[dict, int]:
    ledgers = await stack.ledgers()
    return (
        {(b, a.account_id): a.balance_cents for b, ledger in ledgers.items() for a in ledger.accounts},
        sum(ledger.held_cents for ledger in ledgers.values()),
    )


async def no_holds(stack) -> dict:
    async def settled():
        balances, held = await snapshot(stack)
        return balances if held == 0 else None

    return await eventually(settled, timeout_s=5, interval_s=0.05)


async def serving(channel) -> None:
    answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def abort_yes_votes(c: Ctx, bank: str, method: str, payload: bytes) -> None:
    """A prepare the fuzzer got a YES for is what a gateway would then abort: do so."""
    if method != "PrepareBatch":
        return
    for p in pb.PrepareBatchRequest.FromString(payload).prepares:
        abort = pb.DecideBatchRequest(decisions=[pb.DecisionItem(txn_id=p.txn_id, decision=pb.ABORT)])
        await call(c.bank_channels[bank], "/strife.v1.Bank/DecideBatch", abort.SerializeToString())


async def check_ledgers(c: Ctx, before: dict, code, accepted_may_move: bool) -> None:
    after = await no_holds(c.stack)
    if code is grpc.StatusCode.OK and accepted_may_move:
        assert sum(after.values()) == sum(before.values()), "an accepted request created or destroyed money"
    else:
        assert after == before, "a refused request changed a balance"


# ------------------------------------------------------------------ tests --


@FUZZ
@given(data=st.data())
async def test_random_gateway_requests_get_proper_answers_and_change_nothing(ctx, data):
    method = data.draw(st.sampled_from(GATEWAY_METHODS), label="method")
    request = data.draw(GATEWAY_REQUESTS[method], label="request")
    token = data.draw(TOKEN, label="token")
    if method == "Logout" and token in ctx.sessions:
        token = None  # keep the module's sessions alive
    before, _ = await snapshot(ctx.stack)
    code, answer, details = await call(
        ctx.gw_channel, f"/strife.v1.Gateway/{method}", request.SerializeToString(), metadata(ctx, token)
    )
    assert_proper(method, code, answer, details, long_strings(request))
    # Only a Pay that got through can move money, between accounts.
    await check_ledgers(ctx, before, code, accepted_may_move=method == "Pay")
    await serving(ctx.gw_channel)


@FUZZ
@given(data=st.data())
async def test_random_bank_requests_get_proper_answers_and_change_nothing(ctx, data):
    """With the gateway's own certificate, so requests reach the handlers' checks."""
    bank = data.draw(st.sampled_from(sorted(ctx.bank_channels)), label="bank")
    method = data.draw(st.sampled_from(BANK_METHODS), label="method")
    request = data.draw(BANK_REQUESTS[method], label="request")
    before, _ = await snapshot(ctx.stack)
    payload = request.SerializeToString()
    code, answer, details = await call(ctx.bank_channels[bank], f"/strife.v1.Bank/{method}", payload)
    assert_proper(method, code, answer, details, long_strings(request))
    if code is grpc.StatusCode.OK:
        await abort_yes_votes(ctx, bank, method, payload)
    await check_ledgers(ctx, before, code, accepted_may_move=False)
    await serving(ctx.bank_channels[bank])


@FUZZ
@given(data=st.data())
async def test_undecodable_bytes_are_refused_by_every_server(ctx, data):
    """Raw bytes as the request body (the server sees protobuf that may not parse)."""
    target = data.draw(st.sampled_from(["gateway", *sorted(ctx.bank_channels)]), label="server")
    methods = GATEWAY_METHODS if target == "gateway" else BANK_METHODS
    service = "Gateway" if target == "gateway" else "Bank"
    method = data.draw(
        st.one_of(
            st.sampled_from([f"/strife.v1.{service}/{m}" for m in methods]),
            st.sampled_from(
                [
                    "/grpc.health.v1.Health/Check",
                    f"/strife.v1.{service}/Nope",
                    "/strife.v1.Coordinator/ResolveTransaction",
                ]
            ),
        ),
        label="method",
    )
    payload = data.draw(RAW, label="payload")
    channel = ctx.gw_channel if target == "gateway" else ctx.bank_channels[target]
    with_token = data.draw(st.booleans(), label="with token") and not method.endswith("/Logout")
    md = ctx.sessions["bob"] if with_token else ()  # (a Logout that parsed would end bob's session)
    before, _ = await snapshot(ctx.stack)
    code, answer, details = await call(channel, method, payload, md)
    assert_proper(method, code, answer, details, [], allowed=PROPER | {grpc.StatusCode.UNIMPLEMENTED})
    if method.endswith("/Nope"):
        assert code is grpc.StatusCode.UNIMPLEMENTED
    assert len(answer) < 64 * 1024
    if code is grpc.StatusCode.OK and target != "gateway":
        await abort_yes_votes(ctx, target, method.rsplit("/", 1)[-1], payload)
    await check_ledgers(ctx, before, code, accepted_may_move=method.endswith("/Pay"))
    await serving(channel)


ALL_METHODS = [
    *(f"/strife.v1.Gateway/{m}" for m in GATEWAY_METHODS),
    *(f"/strife.v1.Bank/{m}" for m in BANK_METHODS),
    "/grpc.health.v1.Health/Check",
]
# Not protobuf whatever the message type: a tag that never ends, wire type 7, a length
# far past the end.
CORRUPT = (b"\xff\xff\xff\xff", b"\x0f", b"\x0a\xff\xff\xff\xff\x0f")
# A string field 1 that is not UTF-8, for messages whose field 1 is a string.
BAD_UTF8 = b"\x0a\x04\xc3\x28\xff\xfe"
STRING_FIELD_1 = {
    m.name
    for service in SERVICES.values()
    for m in service.methods
    if 1 in m.input_type.fields_by_number and m.input_type.fields_by_number[1].type == FieldDescriptor.TYPE_STRING
}


@pytest.mark.parametrize("method", ALL_METHODS)
async def test_corrupt_protobuf_is_invalid_argument(ctx, method):
    """The runtime used to answer UNKNOWN for these: an exception escaping the handler."""
    name = method.rsplit("/", 1)[-1]
    channel = ctx.bank_channels["BankA"] if ".Bank/" in method else ctx.gw_channel
    payloads = CORRUPT + ((BAD_UTF8,) if name in STRING_FIELD_1 and method != "/strife.v1.Gateway/Balance" else ())
    for payload in payloads:
        md = () if name == "Logout" else ctx.sessions["bob"]  # a Logout that parsed would end bob's session
        code, _, details = await call(channel, method, payload, md)
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (method, payload, code, details)
        assert details.startswith("malformed request") and len(details) <= MAX_DETAILS
    await serving(channel)


async def test_page_tokens_that_are_not_ascii_numbers_are_invalid_argument(ctx):
    """'²'.isdigit() is true, and 19 nines overflow SQLite: both used to escape as UNKNOWN."""
    gw_md = ctx.sessions["bob"]
    for token in ("²", "١٢٣", "9" * 19, "4611686018427387905", "-1", " 1", "1" * 5000):
        code, _, details = await call(
            ctx.gw_channel,
            "/strife.v1.Gateway/ListPayments",
            pb.ListPaymentsRequest(page_token=token).SerializeToString(),
            gw_md,
        )
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (token[:20], code, details)
        assert "bad page_token" in details
    ok, _, _ = await call(
        ctx.gw_channel,
        "/strife.v1.Gateway/ListPayments",
        pb.ListPaymentsRequest(page_token="0" * 19).SerializeToString(),
        gw_md,
    )
    assert ok is grpc.StatusCode.OK
