"""Idempotency keys through real processes: a key is charged at most once, replays
give the stored answer, a reused key with another request is refused, a key in
flight is refused with ABORTED, and a payment refused because a bank was down can
be retried with its key once the bank is back."""

import asyncio
import uuid

import grpc
import pytest

from backend.api import strife_pb2 as pb
from backend.common.events import Event, Phase
from backend.common.states import LedgerState
from tests.stack import eventually, fault_env, pay_request, start_stack

pytestmark = pytest.mark.usefixtures("both_engines")  # each test on SQLite and on PostgreSQL

REPLAYED = ("idempotent-replayed", "true")


async def pay_call(gw, md, request):
    """(payment, trailing metadata) of one Pay call."""
    call = gw.Pay(request, metadata=md, timeout=10)
    payment = await call
    return payment, tuple(await call.trailing_metadata() or ())


def same_answer(a: pb.Payment, b: pb.Payment) -> bool:
    return (a.payment_id, a.status, a.amount_cents, a.reason, a.idempotency_key) == (
        b.payment_id,
        b.status,
        b.amount_cents,
        b.reason,
        b.idempotency_key,
    )


async def test_same_key_sequentially_charges_once_and_replays_the_answer(stack):
    gw, md = await stack.login("bob")
    before = await stack.balances()
    request = pay_request("BankA", "A-1001", 1234)

    first, first_trailers = await pay_call(gw, md, request)
    assert first.status == pb.SUCCEEDED
    assert REPLAYED not in first_trailers
    for _ in range(3):
        again, trailers = await pay_call(gw, md, request)
        assert same_answer(again, first), (again, first)
        assert REPLAYED in trailers

    after = await stack.balances()
    assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] - 1234
    assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] + 1234
    committed = [t for t in await stack.transactions("BankB") if t.state == pb.COMMITTED]
    assert [t.txn_id for t in committed] == [first.payment_id]
    # the history shows one payment, not four
    history = await gw.ListPayments(pb.ListPaymentsRequest(), metadata=md, timeout=5)
    assert [p.payment_id for p in history.payments] == [first.payment_id]


async def test_same_key_from_a_new_session_is_still_replayed(stack):
    gw, md = await stack.login("bob")
    request = pay_request("BankC", "C-3001", 500)
    first, _ = await pay_call(gw, md, request)
    gw2, md2 = await stack.login("bob")  # another login, another connection
    again, trailers = await pay_call(gw2, md2, request)
    assert same_answer(again, first) and REPLAYED in trailers
    assert (await stack.balances())[("BankB", "B-2001")] == 75000 - 500


async def test_same_key_ten_times_in_parallel_charges_once(stack):
    gw, md = await stack.login("bob")
    before = await stack.balances()
    request = pay_request("BankA", "A-1002", 700)

    async def until_final():
        """What a well-behaved client does: retry ABORTED (key in flight) with the same key."""
        aborted = 0
        while True:
            try:
                payment, trailers = await pay_call(gw, md, request)
                return payment, trailers, aborted
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.ABORTED, exc
                assert "in progress" in exc.details()
                aborted += 1
                await asyncio.sleep(0.05)

    results = await asyncio.gather(*(until_final() for _ in range(10)))
    payments = [p for p, _, _ in results]
    assert all(same_answer(p, payments[0]) for p in payments), payments
    assert payments[0].status == pb.SUCCEEDED and payments[0].amount_cents == 700
    originals = [p for p, trailers, _ in results if REPLAYED not in trailers]
    assert len(originals) == 1, "exactly one call made the payment, the rest were replays"

    after = await stack.balances()
    assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] - 700
    assert after[("BankA", "A-1002")] == before[("BankA", "A-1002")] + 700
    assert await stack.total_cents() == sum(before.values())
    await stack.logs_caught_up()
    assert len(stack.begun()) == 1, "the gateway began one transaction for one key"
    await stack.assert_atomic()


async def test_a_declined_payment_is_replayed_as_declined(stack):
    gw, md = await stack.login("carol")
    request = pay_request("BankA", "A-1001", 60001)  # carol holds 60000
    first, _ = await pay_call(gw, md, request)
    assert first.status == pb.DECLINED and first.reason == "insufficient funds"
    again, trailers = await pay_call(gw, md, request)
    assert same_answer(again, first) and REPLAYED in trailers
    assert (await stack.balances())[("BankC", "C-3001")] == 60000


@pytest.mark.parametrize(
    "change",
    [
        {"amount_cents": 1001},
        {"to": pb.AccountRef(bank="BankC", account_id="C-3001")},
        {"to": pb.AccountRef(bank="BankA", account_id="A-1002")},
    ],
    ids=["other-amount", "other-payee-bank", "other-payee-account"],
)
async def test_same_key_with_a_different_request_is_refused(stack, change):
    gw, md = await stack.login("bob")
    request = pay_request("BankA", "A-1001", 1000)
    first, _ = await pay_call(gw, md, request)
    assert first.status == pb.SUCCEEDED
    before = await stack.ledgers()

    other = pb.PayRequest()
    other.CopyFrom(request)
    for name, value in change.items():
        if isinstance(value, pb.AccountRef):
            getattr(other, name).CopyFrom(value)
        else:
            setattr(other, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.Pay(other, metadata=md, timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert request.idempotency_key in err.value.details()
    assert "different payment" in err.value.details()
    assert await stack.ledgers() == before

    # the original request still replays its own answer
    again, trailers = await pay_call(gw, md, request)
    assert same_answer(again, first) and REPLAYED in trailers


async def test_keys_belong_to_their_user(stack):
    """Two users who happen to pick the same key make two payments."""
    key = str(uuid.uuid4())
    bob, bob_md = await stack.login("bob")
    carol, carol_md = await stack.login("carol")
    p1, _ = await pay_call(bob, bob_md, pay_request("BankA", "A-1001", 300, key=key))
    p2, t2 = await pay_call(carol, carol_md, pay_request("BankA", "A-1001", 300, key=key))
    assert p1.status == p2.status == pb.SUCCEEDED
    assert p1.payment_id != p2.payment_id and REPLAYED not in t2
    assert (await stack.balances())[("BankA", "A-1001")] == 100000 + 600


async def test_same_key_while_in_flight_is_aborted(tmp_path, certs_dir):
    # BankB writes its YES and never answers: the payment stays in 2PC until the
    # gateway's 3 s deadline, a window in which the key is deterministically in flight.
    stack = await start_stack(
        tmp_path, certs_dir, twopc_timeout_s=3.0, proc_env={"BankB": fault_env("bank.hang_after_yes")}
    )
    try:
        gw, md = await stack.login("alice")
        before = await stack.balances()
        request = pay_request("BankB", "B-2001", 400, from_bank="BankA", from_account="A-1001")
        first = asyncio.ensure_future(gw.Pay(request, metadata=md, timeout=10))

        def bank_b_voted():
            return any(r.get("process") == "BankB" and r.get("phase") == Phase.VOTE for r in stack.records)

        async def voted():
            return bank_b_voted()

        await eventually(voted, timeout_s=5, interval_s=0.02)
        assert not first.done()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.Pay(request, metadata=md, timeout=5)
        assert err.value.code() == grpc.StatusCode.ABORTED
        assert "in progress" in err.value.details() and request.idempotency_key in err.value.details()
        # a different request under the same key is a conflict even while in flight
        other = pay_request(
            "BankB", "B-2001", 401, key=request.idempotency_key, from_bank="BankA", from_account="A-1001"
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.Pay(other, metadata=md, timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # BankB never answered: the gateway aborts at its deadline and tells the client to retry
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await first
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "same idempotency key" in err.value.details()
        await eventually(stack.settled)
        await stack.assert_atomic()
        assert await stack.balances() == before
    finally:
        await stack.close()


async def test_payment_refused_while_a_bank_is_down_succeeds_on_retry_with_same_key(stack):
    gw, md = await stack.login("alice")
    before = await stack.balances()
    request = pay_request("BankB", "B-2001", 2500, from_bank="BankA", from_account="A-1001")

    await stack.sup.kill("BankB")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gw.Pay(request, metadata=md, timeout=10)
    breakers = [r for r in stack.log_lines("gateway") if r.get("event") == Event.BREAKER]
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, breakers
    assert "BankB" in err.value.details() and "same idempotency key" in err.value.details(), breakers
    # BankA voted YES and was told to abort before the client got its answer
    ledgers = await stack.ledgers("BankA", "BankC")
    assert ledgers["BankA"].held_cents == 0
    assert ledgers["BankA"].total_cents == sum(v for (b, _), v in before.items() if b == "BankA")
    # a refused payment is not in the history
    history = await gw.ListPayments(pb.ListPaymentsRequest(), metadata=md, timeout=5)
    assert list(history.payments) == []

    await stack.sup.restart("BankB")
    paid = await eventually(lambda: _try_pay(gw, md, request), timeout_s=10, interval_s=0.2)
    assert paid.status == pb.SUCCEEDED and paid.amount_cents == 2500
    again, trailers = await pay_call(gw, md, request)
    assert same_answer(again, paid) and REPLAYED in trailers

    after = await stack.balances()
    assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] - 2500
    assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] + 2500
    assert sum(after.values()) == sum(before.values())
    # the aborted first attempt reaches BankB too, and nothing is left in doubt
    await eventually(stack.settled)
    states = await stack.assert_atomic()
    committed = [t for t, s in states.items() if LedgerState.COMMITTED in s.values()]
    assert committed == [paid.payment_id]


async def _try_pay(gw, md, request):
    """The payment, or None while the gateway still cannot reach the bank."""
    try:
        return await gw.Pay(request, metadata=md, timeout=10)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return None
        raise


async def test_client_giving_up_mid_payment_then_retrying_is_charged_once(tmp_path, certs_dir):
    """The client's deadline expires while the payment is in 2PC (BankB frozen). The
    gateway carries on or aborts; either way the retry under the same key ends with one
    final answer and at most one charge."""
    stack = await start_stack(tmp_path, certs_dir, twopc_timeout_s=3.0)
    try:
        gw, md = await stack.login("alice")
        before = await stack.balances()
        request = pay_request("BankB", "B-2001", 650, from_bank="BankA", from_account="A-1001")
        await stack.sup.freeze("BankB")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gw.Pay(request, metadata=md, timeout=0.3)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await stack.sup.thaw("BankB")

        async def final():
            try:
                return await gw.Pay(request, metadata=md, timeout=5)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() in (
                    grpc.StatusCode.ABORTED,
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ), exc
                return None

        paid = await eventually(final, timeout_s=15, interval_s=0.1)
        assert paid.status == pb.SUCCEEDED
        again, trailers = await pay_call(gw, md, request)
        assert same_answer(again, paid) and REPLAYED in trailers
        await eventually(stack.settled)
        states = await stack.assert_atomic()
        assert [t for t, s in states.items() if LedgerState.COMMITTED in s.values()] == [paid.payment_id]
        after = await stack.balances()
        assert after[("BankA", "A-1001")] == before[("BankA", "A-1001")] - 650
        assert after[("BankB", "B-2001")] == before[("BankB", "B-2001")] + 650
    finally:
        await stack.close()


async def test_a_retry_without_a_payer_account_replays_after_the_user_links_another_account(tmp_path, certs_dir):
    """The first send resolved the user's only account; linking a second one must not turn
    the retry of that same key into 'say which account'."""
    import json

    from backend.common import fixtures

    banks = json.loads(fixtures.DEFAULT_BANKS.read_text())
    banks["banks"][0]["accounts"].append({"id": "A-1004", "owner": "dave", "balance_cents": 1000})
    (tmp_path / "banks.json").write_text(json.dumps(banks))
    stack = await start_stack(tmp_path, certs_dir, bank_fixtures=tmp_path / "banks.json")
    try:
        gw = stack.gateway()
        await gw.Register(
            pb.RegisterRequest(
                username="dave", password="dave-secret-1", account=pb.AccountRef(bank="BankA", account_id="A-1002")
            ),
            timeout=10,
        )
        gw, md = await stack.login("dave", "dave-secret-1")
        request = pay_request("BankB", "B-2001", 700)  # no payer account: dave holds one
        first = await gw.Pay(request, metadata=md, timeout=10)
        assert first.status == pb.SUCCEEDED
        await gw.LinkAccount(
            pb.LinkAccountRequest(account=pb.AccountRef(bank="BankA", account_id="A-1004")), metadata=md, timeout=10
        )
        again = await gw.Pay(request, metadata=md, timeout=10)
        assert (again.payment_id, again.status) == (first.payment_id, first.status)
        with pytest.raises(grpc.aio.AioRpcError) as err:  # a new key still has to say which account
            await gw.Pay(pay_request("BankB", "B-2001", 700), metadata=md, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (await stack.balances())[("BankA", "A-1002")] == 50000 - 700
    finally:
        await stack.close()
