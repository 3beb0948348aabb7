"""How the gateway's 2PC traffic reaches a bank. Decisions ride on prepares: a PrepareBatch
carries the decisions waiting for its bank, which applies them first, in the same write,
and answers them as DecideBatch would. Prepares of payments under way together share a call.
Real bank processes; the gateway's side (BankBatches) is driven from here with its certificate."""

import asyncio
import uuid

import grpc
import pytest
import pytest_asyncio

from backend.api import strife_pb2 as pb
from backend.common.limits import MAX_BATCH
from backend.common.states import LedgerState
from backend.gateway import banks
from backend.gateway.bank_stream import BankStream
from backend.gateway.banks import BankBatches
from tests.stack import start_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACCOUNT = "A-1003"  # erin's, seeded with 25,000 cents; nobody else in this module touches it


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory, certs_dir):
    s = await start_stack(tmp_path_factory.mktemp("ride"), certs_dir)
    try:
        yield s
    finally:
        await s.close()


@pytest_asyncio.fixture(loop_scope="module")
async def batches(stack):
    """BankBatches as the gateway uses it: over a stream (Bank.Batches) with its certificate."""
    stream = BankStream(stack.bank("BankA", role="gateway"), "BankA")
    yield BankBatches(stream, prepare_timeout_s=5)
    stream.close()


def txn() -> str:
    return f"ride-{uuid.uuid4().hex}"


def debit(txn_id: str, cents: int, account: str = ACCOUNT) -> pb.PrepareRequest:
    return pb.PrepareRequest(txn_id=txn_id, legs=[pb.Leg(account_id=account, delta_cents=-cents)])


def decision(txn_id: str, commit: bool) -> pb.DecisionItem:
    return pb.DecisionItem(txn_id=txn_id, decision=pb.COMMIT if commit else pb.ABORT)


async def available(stack) -> int:
    return (await stack.bank("BankA").Balance(pb.BankBalanceRequest(account_id=ACCOUNT), timeout=5)).available_cents


async def states(stack, *txn_ids: str) -> dict[str, LedgerState]:
    known = await stack.txn_states("BankA")
    return {t: known.get(t, {}).get("BankA") for t in txn_ids}


async def test_an_abort_riding_on_a_prepare_frees_the_funds_that_prepare_needs(stack):
    bank = stack.bank("BankA", role="gateway")
    funds = await available(stack)
    first, second = txn(), txn()
    vote = await bank.PrepareBatch(pb.PrepareBatchRequest(prepares=[debit(first, funds)]), timeout=5)
    assert vote.votes[0].vote == pb.YES and await available(stack) == 0

    both = pb.PrepareBatchRequest(prepares=[debit(second, funds)], decisions=[decision(first, commit=False)])
    answer = await bank.PrepareBatch(both, timeout=5)

    assert [r.ok for r in answer.results] == [True]
    assert answer.votes[0].vote == pb.YES  # the abort was applied first, in the same write
    assert await states(stack, first, second) == {first: LedgerState.ABORTED, second: LedgerState.PREPARED}
    await bank.DecideBatch(pb.DecideBatchRequest(decisions=[decision(second, commit=False)]), timeout=5)
    assert await available(stack) == funds


async def test_a_commit_riding_on_a_prepare_is_applied_and_answered(stack):
    bank = stack.bank("BankA", role="gateway")
    funds = await available(stack)
    paid, unknown, next_one = txn(), txn(), txn()
    await bank.PrepareBatch(pb.PrepareBatchRequest(prepares=[debit(paid, 700)]), timeout=5)

    request = pb.PrepareBatchRequest(
        prepares=[debit(next_one, 1)], decisions=[decision(paid, commit=True), decision(unknown, commit=True)]
    )
    answer = await bank.PrepareBatch(request, timeout=5)

    # Answers in order: the commit applied; a commit of a transaction never prepared refused
    # (as DecideBatch refuses it), without stopping the rest of the call.
    assert [r.ok for r in answer.results] == [True, False]
    assert answer.results[0].error == "" and "never prepared" in answer.results[1].error
    assert answer.votes[0].vote == pb.YES
    assert await states(stack, paid, unknown, next_one) == {
        paid: LedgerState.COMMITTED,
        unknown: None,
        next_one: LedgerState.PREPARED,
    }
    await bank.DecideBatch(pb.DecideBatchRequest(decisions=[decision(next_one, commit=False)]), timeout=5)
    assert await available(stack) == funds - 700


@pytest.mark.parametrize(
    "decisions, said",
    [
        ([pb.DecisionItem(txn_id="ride-bad", decision=pb.DECISION_UNSPECIFIED)], "decision must be COMMIT or ABORT"),
        ([pb.DecisionItem(txn_id="", decision=pb.ABORT)], "bad transaction id"),
        ([decision(f"ride-many-{i}", commit=False) for i in range(MAX_BATCH + 1)], f"0 to {MAX_BATCH} decisions"),
    ],
)
async def test_a_malformed_rider_refuses_the_whole_call_and_prepares_nothing(stack, decisions, said):
    bank = stack.bank("BankA", role="gateway")
    funds = await available(stack)
    prepared = txn()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await bank.PrepareBatch(pb.PrepareBatchRequest(prepares=[debit(prepared, 5)], decisions=decisions), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert said in err.value.details()
    assert await states(stack, prepared) == {prepared: None}
    assert await available(stack) == funds


async def test_the_gateway_sends_a_waiting_commit_with_the_next_prepare(stack, batches):
    """BankBatches as the gateway uses it: a commit lingers for company; a prepare for the
    same bank takes it along, so the bank sees one call and no DecideBatch."""
    paid, after = txn(), txn()
    await batches.prepare(debit(paid, 300), alone=True)
    funds = await available(stack)
    await stack.logs_caught_up()
    calls_before = bank_calls(stack)

    commit = batches.decide(paid, commit=True)  # lingers (DECISION_LINGER_S) ...
    vote = batches.prepare(debit(after, 1), alone=True)  # ... and this call takes it
    assert (await commit).ok and (await vote).vote == pb.YES

    await stack.logs_caught_up()
    new = bank_calls(stack)[len(calls_before) :]
    assert [(c["method"].rsplit("/", 1)[1], c.get("decisions")) for c in new] == [("PrepareBatch", 1)]
    assert await states(stack, paid) == {paid: LedgerState.COMMITTED}
    assert await available(stack) == funds - 1  # the hold of `after`; `paid`'s 300 left with its commit
    await batches.decide(after, commit=False)


async def test_a_rider_of_a_refused_prepare_call_is_not_acknowledged(stack, batches):
    """The call that carries a commit is refused (here: its prepare is malformed, so the bank
    changes nothing): the commit gets the call's failure, not an acknowledgement, and stays to
    be sent again. Sent alone (DecideBatch) it would have been applied."""
    paid = txn()
    await batches.prepare(debit(paid, 5), alone=True)

    commit = batches.decide(paid, commit=True)
    vote = batches.prepare(pb.PrepareRequest(txn_id=txn(), legs=[]), alone=True)  # no legs: refused
    for future in (vote, commit):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await future
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await states(stack, paid) == {paid: LedgerState.PREPARED}  # held, in doubt: not lost

    assert (await batches.decide(paid, commit=True)).ok  # the re-send
    assert await states(stack, paid) == {paid: LedgerState.COMMITTED}


async def test_a_balance_read_sends_the_lingering_commits_at_once(stack, monkeypatch):
    """Read-your-writes must not wait out the linger: hurry() sends what lingers now."""
    monkeypatch.setattr(banks, "DECISION_LINGER_S", 600.0)  # a commit alone would wait 10 minutes
    stream = BankStream(stack.bank("BankA", role="gateway"), "BankA")
    batches = BankBatches(stream, prepare_timeout_s=5)
    paid = txn()
    try:
        await batches.prepare(debit(paid, 5), alone=True)
        commit = batches.decide(paid, commit=True)
        await asyncio.sleep(0.05)
        assert not commit.done()  # lingering
        batches.hurry()
        assert (await asyncio.wait_for(commit, 5)).ok
        assert await states(stack, paid) == {paid: LedgerState.COMMITTED}
    finally:
        stream.close()


@pytest.mark.parametrize("alone, calls", [(False, [2]), (True, [1, 1])])
async def test_prepares_share_a_call_unless_their_payment_is_alone(stack, batches, alone, calls):
    """Not alone (other payments under way), a prepare that finds the batcher idle lingers
    (PREPARE_LINGER_S) and the next one joins it; a payment alone never waits."""
    first, second = txn(), txn()
    await stack.logs_caught_up()
    calls_before = bank_calls(stack)

    votes = [batches.prepare(debit(first, 1), alone), batches.prepare(debit(second, 1), alone)]
    assert [(await v).vote for v in votes] == [pb.YES, pb.YES]

    await stack.logs_caught_up()
    assert [c["txns"] for c in bank_calls(stack)[len(calls_before) :]] == calls
    for t in (first, second):
        await batches.decide(t, commit=False)


def bank_calls(stack) -> list[dict]:
    return [r for r in stack.log_lines("BankA") if r.get("method", "").endswith(("/PrepareBatch", "/DecideBatch"))]
