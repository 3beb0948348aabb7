"""Bad input, each answered with the right status code and a message a person can act
on, with nothing changed in any ledger and the gateway still serving afterwards."""

from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio

from backend.api import strife_pb2 as pb
from backend.common.limits import MAX_AMOUNT_CENTS
from tests.stack import eventually, pay_request, start_stack

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.usefixtures("module_engine"),  # every test on SQLite, then on PostgreSQL
]

BIG = "x" * 10_000  # 10 KB: under the 64 KB message limit, far over every field limit
HUGE = "k" * 100_000  # a request over the gateway's 64 KB receive limit
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)


@dataclass
class Ctx:
    stack: object
    gw: object
    bob: tuple  # metadata of bob (one account, B-2001)
    alice: tuple  # metadata of alice (A-1001 and C-3002)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx(tmp_path_factory, certs_dir, module_engine):
    stack = await start_stack(tmp_path_factory.mktemp("bad-input"), certs_dir)
    try:
        gw, bob = await stack.login("bob")
        _, alice = await stack.login("alice")
        yield Ctx(stack, gw, bob, alice)
    finally:
        await stack.close()


def ref(bank, account):
    return pb.AccountRef(bank=bank, account_id=account)


def pay(c, md_name="bob", **kw):
    md = getattr(c, md_name)
    return c.gw.Pay(
        pay_request(**{"to_bank": "BankA", "to_account": "A-1001", "amount_cents": 100, **kw}), metadata=md, timeout=10
    )


def register(c, username="newuser", password="a-long-password", bank="BankA", account="A-1002"):
    return c.gw.Register(
        pb.RegisterRequest(username=username, password=password, account=ref(bank, account)), timeout=10
    )


def login(c, username="bob", password="wrong-password"):
    return c.gw.Login(pb.LoginRequest(username=username, password=password), timeout=10)


def with_auth(c, header):
    return c.gw.Balance(pb.BalanceRequest(), metadata=header, timeout=10)


INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
DENIED, UNAUTH = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED

CASES = {
    # amounts
    "amount-zero": (lambda c: pay(c, amount_cents=0), INVALID, "amount must be positive"),
    "amount-negative": (lambda c: pay(c, amount_cents=-500), INVALID, "amount must be positive"),
    "amount-int64-min": (lambda c: pay(c, amount_cents=INT64_MIN), INVALID, "amount must be positive"),
    "amount-over-limit": (lambda c: pay(c, amount_cents=MAX_AMOUNT_CENTS + 1), INVALID, "over the limit"),
    "amount-int64-max": (lambda c: pay(c, amount_cents=INT64_MAX), INVALID, "over the limit"),
    # where the money goes
    "unknown-bank": (lambda c: pay(c, to_bank="BankZ"), NOT_FOUND, "unknown bank BankZ"),
    "unknown-payee-account": (lambda c: pay(c, to_account="A-9999"), NOT_FOUND, "unknown account A-9999"),
    "unknown-payee-more-than-you-have": (  # the account is the mistake, not the funds
        lambda c: pay(c, to_account="A-9999", amount_cents=100_000_00),
        NOT_FOUND,
        "unknown account A-9999",
    ),
    "unknown-payee-same-bank": (
        lambda c: pay(c, to_bank="BankB", to_account="B-9999"),
        NOT_FOUND,
        "unknown account B-9999",
    ),
    "pay-yourself": (lambda c: pay(c, to_bank="BankB", to_account="B-2001"), INVALID, "same account"),
    "pay-from-someone-elses-account": (
        lambda c: pay(c, from_bank="BankC", from_account="C-3001"),
        DENIED,
        "only from your own accounts",
    ),
    "two-accounts-no-from": (lambda c: pay(c, "alice", to_bank="BankB", to_account="B-2001"), INVALID, "say which one"),
    # oversized and malformed strings
    "bank-10kb": (lambda c: pay(c, to_bank=BIG), INVALID, "bad bank name"),
    "account-10kb": (lambda c: pay(c, to_account=BIG), INVALID, "bad account id"),
    "from-account-10kb": (lambda c: pay(c, "alice", from_bank="BankA", from_account=BIG), INVALID, "bad account id"),
    "from-account-60kb": (
        lambda c: pay(c, "alice", from_bank="BankA", from_account="y" * 60_000),
        INVALID,
        "bad account id",
    ),
    "from-bank-10kb": (lambda c: pay(c, "alice", from_bank=BIG, from_account="A-1001"), INVALID, "bad bank name"),
    "key-10kb": (lambda c: pay(c, key=BIG), INVALID, "bad idempotency_key"),
    "key-256-chars": (lambda c: pay(c, key="k" * 256), INVALID, "1-255 printable ASCII"),
    "key-with-space": (lambda c: pay(c, key="two words"), INVALID, "bad idempotency_key"),
    "key-not-ascii": (lambda c: pay(c, key="schlüssel"), INVALID, "bad idempotency_key"),
    "key-missing": (
        lambda c: c.gw.Pay(pb.PayRequest(to=ref("BankA", "A-1001"), amount_cents=100), metadata=c.bob, timeout=10),
        INVALID,
        "idempotency_key is required",
    ),
    "message-over-64kb": (lambda c: pay(c, key=HUGE), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
    "payment-id-10kb": (
        lambda c: c.gw.GetPayment(pb.GetPaymentRequest(payment_id=BIG), metadata=c.bob, timeout=10),
        INVALID,
        "bad transaction id",
    ),
    "payment-id-unknown": (
        lambda c: c.gw.GetPayment(pb.GetPaymentRequest(payment_id="nope"), metadata=c.bob, timeout=10),
        NOT_FOUND,
        "no payment nope",
    ),
    "page-size-too-big": (
        lambda c: c.gw.ListPayments(pb.ListPaymentsRequest(page_size=101), metadata=c.bob, timeout=10),
        INVALID,
        "page_size must be 1 to 100",
    ),
    "page-token-garbage": (
        lambda c: c.gw.ListPayments(pb.ListPaymentsRequest(page_token="abc"), metadata=c.bob, timeout=10),
        INVALID,
        "bad page_token",
    ),
    # accounts and users
    "register-taken-username": (
        lambda c: register(c, username="alice", account="A-1001"),
        grpc.StatusCode.ALREADY_EXISTS,
        "taken",
    ),
    "register-someone-elses-account": (
        lambda c: register(c, username="mallory", bank="BankB", account="B-2001"),
        DENIED,
        "not held by mallory",
    ),
    "register-unknown-bank": (lambda c: register(c, bank="BankZ"), NOT_FOUND, "unknown bank BankZ"),
    "register-unknown-account": (lambda c: register(c, account="A-9999"), NOT_FOUND, "no account A-9999"),
    "register-username-10kb": (lambda c: register(c, username=BIG), INVALID, "bad username"),
    "register-username-uppercase": (lambda c: register(c, username="Mallory"), INVALID, "bad username"),
    "register-password-short": (lambda c: register(c, password="short"), INVALID, "8 to 256 characters"),
    "register-password-10kb": (lambda c: register(c, password=BIG), INVALID, "8 to 256 characters"),
    "register-account-10kb": (lambda c: register(c, account=BIG), INVALID, "bad account id"),
    "link-someone-elses-account": (
        lambda c: c.gw.LinkAccount(pb.LinkAccountRequest(account=ref("BankA", "A-1002")), metadata=c.bob, timeout=10),
        DENIED,
        "not held by bob",
    ),
    "login-username-10kb": (lambda c: login(c, username=BIG), INVALID, "bad username"),
    "login-password-10kb": (lambda c: login(c, password=BIG), INVALID, "8 to 256 characters"),
    "login-wrong-password": (lambda c: login(c, "carol", "carol-demo-pX"), UNAUTH, "wrong username or password"),
    "login-unknown-user": (lambda c: login(c, "nobody", "whatever-pw"), UNAUTH, "wrong username or password"),
    # tokens
    "token-missing": (lambda c: with_auth(c, ()), UNAUTH, "missing token"),
    "token-forged": (
        lambda c: with_auth(c, (("authorization", "Bearer " + "A" * 43),)),
        UNAUTH,
        "invalid, expired or revoked token",
    ),
    "token-1000-chars": (
        lambda c: with_auth(c, (("authorization", "Bearer " + "A" * 1000),)),
        UNAUTH,
        "invalid, expired or revoked token",
    ),
    "token-wrong-scheme": (
        lambda c: with_auth(c, (("authorization", c.bob[0][1].replace("Bearer", "Basic")),)),
        UNAUTH,
        "missing token",
    ),
}


async def snapshot(stack):
    return await stack.ledgers(), set(stack.begun())


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_input_is_refused_and_changes_nothing(ctx, case):
    call, code, message = CASES[case]
    ledgers_before, begun_before = await snapshot(ctx.stack)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(ctx)
    assert err.value.code() == code, err.value
    details = err.value.details()
    assert message in details, details
    assert len(details) < 400, "a refusal names the problem; it does not echo a huge input back"
    if "unknown-payee" in case:  # asked the banks: wait for the decision to reach the log
        await ctx.stack.seen(lambda r: r.get("phase") == "decision" and r.get("txn") not in begun_before)
    await ctx.stack.logs_caught_up()
    ledgers_after, begun_after = await snapshot(ctx.stack)
    assert ledgers_after == ledgers_before
    assert all(ledger.held_cents == 0 for ledger in ledgers_after.values())
    if "unknown-payee" not in case:  # refused before any bank was asked
        assert begun_after == begun_before
    # still serving, and bob's session still works
    answer = await ctx.gw.Balance(pb.BalanceRequest(), metadata=ctx.bob, timeout=5)
    assert [a.account.account_id for a in answer.accounts] == ["B-2001"]


async def test_unknown_payee_holds_nothing_and_the_key_stays_usable(ctx):
    """The unknown-payee refusal is final for that request but saves nothing: the same
    key then pays a corrected request."""
    stack = ctx.stack
    before = await stack.balances()
    bad = pay_request("BankC", "C-9999", 250)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await ctx.gw.Pay(bad, metadata=ctx.bob, timeout=10)
    assert err.value.code() == NOT_FOUND
    assert (await stack.ledgers("BankB"))["BankB"].held_cents == 0
    fixed = pay_request("BankC", "C-3001", 250, key=bad.idempotency_key)
    paid = await ctx.gw.Pay(fixed, metadata=ctx.bob, timeout=10)
    assert paid.status == pb.SUCCEEDED
    after = await stack.balances()
    assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] - 250
    assert after[("BankC", "C-3001")] == before[("BankC", "C-3001")] + 250


async def test_boundary_values_are_accepted(ctx):
    """The limits are where they say: a 255-character key and 1 cent are fine."""
    stack = ctx.stack
    before = await stack.balances()
    paid = await ctx.gw.Pay(pay_request("BankA", "A-1001", 1, key="K" * 255), metadata=ctx.bob, timeout=10)
    assert paid.status == pb.SUCCEEDED and paid.idempotency_key == "K" * 255
    assert (await stack.balances())[("BankB", "B-2001")] == before[("BankB", "B-2001")] - 1


async def test_revoked_token_is_refused(ctx):
    gw, md = await ctx.stack.login("carol")
    _, other = await ctx.stack.login("carol")  # a second session of the same user
    await gw.Balance(pb.BalanceRequest(), metadata=md, timeout=5)
    await gw.Logout(pb.LogoutRequest(), metadata=md, timeout=5)
    for call in (
        gw.Balance(pb.BalanceRequest(), metadata=md, timeout=5),
        gw.Pay(pay_request("BankA", "A-1001", 100), metadata=md, timeout=5),
        gw.Logout(pb.LogoutRequest(), metadata=md, timeout=5),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == UNAUTH
        assert "log in again" in err.value.details()
    # logout ends that session only
    await gw.Balance(pb.BalanceRequest(), metadata=other, timeout=5)


async def test_repeated_wrong_passwords_lock_the_login(ctx):
    gw = ctx.stack.gateway()
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.Login(pb.LoginRequest(username="alice", password="not-alices-pw"), timeout=10)
        assert err.value.code() == UNAUTH
    for password in ("not-alices-pw", "alice-demo-pw"):  # locked: even the right one is refused
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.Login(pb.LoginRequest(username="alice", password=password), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many failed logins" in err.value.details()
    # other users are not locked out, and alice's existing session keeps working
    await ctx.stack.login("bob")
    await gw.Balance(pb.BalanceRequest(), metadata=ctx.alice, timeout=5)


async def test_expired_token_is_refused(tmp_path, certs_dir):
    stack = await start_stack(tmp_path, certs_dir, token_ttl_s=1.0)
    try:
        gw, md = await stack.login("bob")
        await gw.Balance(pb.BalanceRequest(), metadata=md, timeout=5)

        async def expired():
            try:
                await gw.Balance(pb.BalanceRequest(), metadata=md, timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc
            return None

        err = await eventually(expired, timeout_s=5, interval_s=0.2)
        assert err.code() == UNAUTH and "log in again" in err.details()
        with pytest.raises(grpc.aio.AioRpcError) as paid:
            await gw.Pay(pay_request("BankA", "A-1001", 100), metadata=md, timeout=5)
        assert paid.value.code() == UNAUTH
        await stack.logs_caught_up()
        assert stack.begun() == {}
        _, fresh = await stack.login("bob")
        await gw.Balance(pb.BalanceRequest(), metadata=fresh, timeout=5)
    finally:
        await stack.close()
