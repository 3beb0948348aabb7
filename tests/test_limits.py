"""Bounds on what one client can make a server hold or do: failed logins per peer,
message sizes, history pages, and concurrent streams on one connection.

(Covered elsewhere: per-username login lockout, expired and revoked tokens, field
lengths and 64 KB at the gateway's Pay in test_bad_input.py; the client outbox's
queue bound in test_client_library.py.)
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
import pytest_asyncio

from backend.api import strife_pb2 as pb
from backend.common.limits import MAX_MESSAGE_BYTES, MAX_PAGE_SIZE
from backend.common.serve import SERVER_OPTIONS
from backend.gateway import login_limiter
from tests.stack import DEMO_PASSWORDS, eventually, pay_request, start_stack

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.usefixtures("module_engine"),  # every test on SQLite, then on PostgreSQL
]

MAX_STREAMS = dict(SERVER_OPTIONS)["grpc.max_concurrent_streams"]
PEER_LIMIT = login_limiter.MAX_FAILURES * 4


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory, certs_dir, module_engine):
    s = await start_stack(tmp_path_factory.mktemp("limits"), certs_dir)
    try:
        yield s
    finally:
        await s.close()


async def code_of(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# ------------------------------------------------------------ login limits --


async def test_failed_logins_from_one_peer_lock_every_username(tmp_path, certs_dir):
    """One failure each for many usernames (never enough to lock any one of them) still
    locks the peer address after MAX_FAILURES * 4: then even a right password is refused,
    while sessions already given out keep working."""
    stack = await start_stack(tmp_path, certs_dir)
    try:
        gw, carol = await stack.login("carol")
        wrong = [
            gw.Login(pb.LoginRequest(username=f"ghost-{i:03d}", password="not-a-password"), timeout=10)
            for i in range(PEER_LIMIT - 1)
        ]
        for call in wrong:
            assert await code_of(call) == grpc.StatusCode.UNAUTHENTICATED
        # one under the bound: a right password still gets in (and does not wipe the peer's count)
        await stack.login("bob")
        assert (
            await code_of(gw.Login(pb.LoginRequest(username="ghost-last", password="not-a-password"), timeout=10))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        for name in ("alice", "bob", "ghost-000"):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await gw.Login(
                    pb.LoginRequest(username=name, password=DEMO_PASSWORDS.get(name, "whatever-pw")), timeout=10
                )
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too many failed logins" in err.value.details()
        await gw.Balance(pb.BalanceRequest(), metadata=carol, timeout=5)
    finally:
        await stack.close()


# ---------------------------------------------------------- message sizes --


async def test_messages_over_64kb_are_refused_everywhere_and_just_under_is_read(stack):
    gw, bob = await stack.login("bob")
    before = await stack.balances()
    big, fits = "x" * (MAX_MESSAGE_BYTES + 1), "x" * (MAX_MESSAGE_BYTES - 100)
    for text, code in ((big, grpc.StatusCode.RESOURCE_EXHAUSTED), (fits, grpc.StatusCode.INVALID_ARGUMENT)):
        assert await code_of(gw.Login(pb.LoginRequest(username="bob", password=text), timeout=10)) == code
        assert await code_of(gw.GetPayment(pb.GetPaymentRequest(payment_id=text), metadata=bob, timeout=10)) == code
        bank = stack.bank("BankA", role="gateway")
        legs = [pb.Leg(account_id=text, delta_cents=-1)]
        prepares = pb.PrepareBatchRequest(prepares=[pb.PrepareRequest(txn_id="big-1", legs=legs)])
        assert await code_of(bank.PrepareBatch(prepares, timeout=10)) == code
        assert await code_of(stack.bank("BankB").Balance(pb.BankBalanceRequest(account_id=text), timeout=10)) == code
    # many small legs adding up to more than 64 KB
    many = [pb.Leg(account_id=f"A-{i:060d}", delta_cents=1) for i in range(1200)]
    assert (
        await code_of(
            stack.bank("BankA", role="gateway").PrepareBatch(
                pb.PrepareBatchRequest(prepares=[pb.PrepareRequest(txn_id="big-2", legs=many)]), timeout=10
            )
        )
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert await stack.balances() == before
    assert not {"big-1", "big-2"} & set(await stack.txn_states())
    await gw.Balance(pb.BalanceRequest(), metadata=bob, timeout=5)


# --------------------------------------------------------- history paging --


async def test_history_pages_are_bounded_and_walk_every_payment_once(stack):
    gw, alice = await stack.login("alice")
    paid = []
    for i in range(7):
        p = await gw.Pay(
            pay_request("BankB", "B-2001", 10 + i, from_bank="BankA", from_account="A-1001"), metadata=alice, timeout=10
        )
        paid.append(p.payment_id)
    for size in (MAX_PAGE_SIZE + 1, -1, 2**31 - 1):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.ListPayments(pb.ListPaymentsRequest(page_size=size), metadata=alice, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    full = await gw.ListPayments(pb.ListPaymentsRequest(page_size=MAX_PAGE_SIZE), metadata=alice, timeout=5)
    assert len(full.payments) <= MAX_PAGE_SIZE
    seen, token = [], ""
    while True:
        page = await gw.ListPayments(pb.ListPaymentsRequest(page_size=3, page_token=token), metadata=alice, timeout=5)
        assert len(page.payments) <= 3
        seen += [p.payment_id for p in page.payments]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)), "a payment came twice"
    assert seen == [p.payment_id for p in full.payments]
    assert seen[:7] == paid[::-1]  # newest first


# ----------------------------------------------------- concurrent streams --
#
# What the bound of 256 streams per connection (grpc.max_concurrent_streams) does: calls
# beyond it wait on the client for a free stream, but at the moment a wave of streams
# closes the server can still count some of them and refuses new ones with RST_STREAM
# REFUSED_STREAM, which the caller sees as UNAVAILABLE (retryable: nothing ran). So a
# burst of more than 256 calls on one channel completes once the refused ones are retried,
# as the client library does with UNAVAILABLE.

REFUSED = grpc.StatusCode.UNAVAILABLE


async def with_retries(make_call, attempts: int = 20):
    """Send a call again while its stream is refused, as a client retrier does."""
    for attempt in range(attempts):
        try:
            return await make_call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != REFUSED or attempt == attempts - 1:
                raise
            assert "RST_STREAM" in (exc.details() or ""), exc.details()
            await asyncio.sleep(0.05)


async def test_500_concurrent_calls_on_one_connection_all_complete(stack):
    """500 reads, then 300 payments, at once on one channel: each read answers the
    right balance, each payment is charged exactly once (a refused stream never reached
    a handler, and a retry sends the same idempotency key), the servers keep serving."""
    gw, bob = await stack.login("bob")
    expected = await gw.Balance(pb.BalanceRequest(), metadata=bob, timeout=5)
    answers = await asyncio.gather(
        *(with_retries(lambda: gw.Balance(pb.BalanceRequest(), metadata=bob, timeout=30)) for _ in range(500))
    )
    assert all(a == expected for a in answers)
    before = await stack.balances()
    _, carol = await stack.login("carol")
    requests = [pay_request("BankA", "A-1001", 1) for _ in range(300)]
    paid = await asyncio.gather(*(with_retries(lambda r=r: gw.Pay(r, metadata=carol, timeout=30)) for r in requests))
    assert {p.status for p in paid} == {pb.SUCCEEDED}
    assert len({p.payment_id for p in paid}) == 300
    after = await stack.balances()
    assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] + 300
    assert sum(after.values()) == sum(before.values())
    await gw.Balance(pb.BalanceRequest(), metadata=bob, timeout=5)


async def test_max_concurrent_streams_is_enforced_per_connection(stack):
    """With BankB frozen, each of bob's Balance calls holds its stream for the gateway's
    2 s bank timeout. Of 300 sent at once on one connection, at most 256 run in the
    first wave; the others wait for a free stream (or are refused, retryable), and none
    fails any other way."""
    gw, bob = await stack.login("bob")
    await gw.Balance(pb.BalanceRequest(), metadata=bob, timeout=5)  # connected, settings known
    await stack.sup.freeze("BankB")
    try:
        started = time.monotonic()

        async def one():
            try:
                answer = await gw.Balance(pb.BalanceRequest(), metadata=bob, timeout=30)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == REFUSED and "RST_STREAM" in exc.details(), exc
                return None
            assert not answer.accounts[0].reachable
            return time.monotonic() - started

        results = await asyncio.gather(*(one() for _ in range(300)))
    finally:
        await stack.sup.thaw("BankB")
    done = sorted(t for t in results if t is not None)
    first_wave = [t for t in done if t < done[0] + 1.0]
    assert len(first_wave) <= MAX_STREAMS, f"{len(first_wave)} calls ran at once on one connection"
    assert len(first_wave) >= MAX_STREAMS // 2  # and the bound is not much lower either

    async def reachable_again():
        return (await gw.Balance(pb.BalanceRequest(), metadata=bob, timeout=5)).accounts[0].reachable

    await eventually(reachable_again, timeout_s=10)


async def test_a_user_keeps_a_bounded_number_of_sessions_the_oldest_revoked(stack):
    from backend.gateway.store import MAX_SESSIONS_PER_USER

    gw = stack.gateway()
    login = pb.LoginRequest(username="carol", password=DEMO_PASSWORDS["carol"])
    tokens = [(await gw.Login(login, timeout=10)).token for _ in range(MAX_SESSIONS_PER_USER + 1)]
    balance = pb.BalanceRequest()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.Balance(balance, metadata=(("authorization", f"Bearer {tokens[0]}"),), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for token in (tokens[1], tokens[-1]):  # every other session still works
        answer = await gw.Balance(balance, metadata=(("authorization", f"Bearer {token}"),), timeout=5)
        assert [a.account.account_id for a in answer.accounts] == ["C-3001"]


async def test_concurrent_wrong_passwords_never_pass_the_lockout(tmp_path, certs_dir):
    """60 guesses at once for one user: only MAX_FAILURES are checked, the rest refused."""
    stack = await start_stack(tmp_path, certs_dir)
    try:
        gw = stack.gateway()
        guess = pb.LoginRequest(username="bob", password="not-bobs-password")

        async def attempt():
            try:
                await gw.Login(guess, timeout=30)
            except grpc.aio.AioRpcError as exc:
                return exc.code()

        codes = await asyncio.gather(*(attempt() for _ in range(60)))
        assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == login_limiter.MAX_FAILURES
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 60 - login_limiter.MAX_FAILURES
    finally:
        await stack.close()
