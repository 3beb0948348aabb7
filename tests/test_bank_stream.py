"""The gateway's 2PC batches as messages of one stream (Bank.Batches): each answered with its
id, each served as its own call would be, and failing as its own call would have. Real bank
processes; the stream is opened from here with the gateway's certificate."""

import asyncio
import uuid

import grpc
import pytest
import pytest_asyncio

from backend.api import strife_pb2 as pb
from backend.bank.service import MAX_STREAM_BATCHES
from backend.common.limits import MAX_BATCH_TIMEOUT_MS
from backend.common.states import LedgerState
from backend.gateway.bank_stream import BankStream
from tests.stack import start_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACCOUNT = "A-1003"  # erin's, at BankA; nobody else in this module touches it


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory, certs_dir):
    s = await start_stack(tmp_path_factory.mktemp("bank-stream"), certs_dir)
    try:
        yield s
    finally:
        await s.close()


def txn() -> str:
    return f"stream-{uuid.uuid4().hex}"


def prepare(txn_id: str, cents: int = 1, legs: int = 1) -> pb.PrepareBatchRequest:
    leg = [pb.Leg(account_id=ACCOUNT, delta_cents=-cents)] if legs else []
    return pb.PrepareBatchRequest(prepares=[pb.PrepareRequest(txn_id=txn_id, legs=leg)])


def abort(txn_id: str) -> pb.DecideBatchRequest:
    return pb.DecideBatchRequest(decisions=[pb.DecisionItem(txn_id=txn_id, decision=pb.ABORT)])


async def states(stack, *txn_ids: str) -> dict[str, LedgerState | None]:
    known = await stack.txn_states("BankA")
    return {t: known.get(t, {}).get("BankA") for t in txn_ids}


async def exchange(stack, batches: list[pb.BankBatch], role: str = "gateway") -> dict[int, pb.BankBatchAnswer]:
    """Write `batches` on a new stream, then read one answer per batch: {id: answer}."""
    call = stack.bank("BankA", role=role).Batches()
    for batch in batches:
        await call.write(batch)
    answers = {}
    for _ in batches:
        answer = await asyncio.wait_for(call.read(), 10)
        answers[answer.id] = answer
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), 10) is grpc.aio.EOF  # it ends when the gateway does
    return answers


async def test_each_batch_is_answered_with_its_id_and_a_refused_one_alone(stack):
    good, bad = txn(), txn()
    answers = await exchange(
        stack,
        [
            pb.BankBatch(id=7, timeout_ms=5000, prepare=prepare(bad, legs=0)),  # no legs: refused
            pb.BankBatch(id=3, timeout_ms=5000, prepare=prepare(good)),
            pb.BankBatch(id=9, timeout_ms=5000),  # neither a prepare nor a decide
            pb.BankBatch(id=4, timeout_ms=0, prepare=prepare(txn())),  # no time to work in
            pb.BankBatch(id=5, timeout_ms=MAX_BATCH_TIMEOUT_MS + 1, prepare=prepare(txn())),
        ],
    )
    assert answers[3].prepare.votes[0].vote == pb.YES
    for refused in (7, 9, 4, 5):
        assert answers[refused].refused.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], answers[refused]
    assert "legs" in answers[7].refused.message and "timeout_ms" in answers[4].refused.message
    assert await states(stack, good, bad) == {good: LedgerState.PREPARED, bad: None}

    answers = await exchange(stack, [pb.BankBatch(id=1, timeout_ms=5000, decide=abort(good))])
    assert answers[1].decide.results[0].ok
    assert await states(stack, good) == {good: LedgerState.ABORTED}


async def test_each_batch_is_logged_as_the_call_it_stands_for(stack):
    txn_id = txn()
    await exchange(stack, [pb.BankBatch(id=1, timeout_ms=5000, prepare=prepare(txn_id))])
    await exchange(stack, [pb.BankBatch(id=1, timeout_ms=5000, decide=abort(txn_id))])
    await stack.logs_caught_up()
    lines = [r for r in stack.log_lines("BankA") if r.get("method", "").startswith("/strife.v1.Bank/")]
    calls = [(r["method"].rsplit("/", 1)[1], r["code"], r.get("role")) for r in lines[-4:]]
    assert calls == [
        ("PrepareBatch", "OK", "gateway"),
        ("Batches", "OK", "gateway"),
        ("DecideBatch", "OK", "gateway"),
        ("Batches", "OK", "gateway"),
    ]


@pytest.mark.parametrize("role", ["operator", "client"])
async def test_only_the_gateway_may_open_the_stream(stack, role):
    call = stack.bank("BankA", role=role).Batches()  # refused when it opens, before any batch
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(call.read(), 10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "Batches is not allowed" in refused.value.details()


async def test_a_message_that_does_not_parse_ends_the_stream(stack):
    channel = stack.channel(stack.cfg.bank_address("BankA"), "gateway")
    call = channel.stream_stream(
        "/strife.v1.Bank/Batches",
        request_serializer=lambda raw: raw,
        response_deserializer=pb.BankBatchAnswer.FromString,
    )()
    await call.write(b"\xff\xff\xff")
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await asyncio.wait_for(call.read(), 10)
    assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed" in ended.value.details()


async def test_the_gateway_side_fails_waiting_batches_when_the_bank_goes_and_reopens(stack):
    """BankStream: a frozen bank times a batch out (DEADLINE_EXCEEDED) without breaking the
    stream; a killed one fails what waits (UNAVAILABLE); the next batch after its restart
    opens a new stream."""
    stream = BankStream(stack.bank("BankA", role="gateway"), "BankA")
    frozen, killed, after = txn(), txn(), txn()
    try:
        assert (await stream.prepare(prepare(txn()), 5)).votes[0].vote == pb.YES

        await stack.sup.freeze("BankA")
        try:
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await stream.prepare(prepare(frozen), 0.3)
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            await stack.sup.thaw("BankA")

        await stack.sup.freeze("BankA")
        waiting = asyncio.ensure_future(stream.decide(abort(frozen), 30))
        await asyncio.sleep(0.2)
        await stack.sup.kill("BankA")  # frozen, it has not answered
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await asyncio.wait_for(waiting, 10)  # not its 30 s: the stream ended
        assert gone.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await stream.prepare(prepare(killed), 5)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE

        await stack.sup.restart("BankA")
        await stack.bank("BankA", role="gateway").ValidateAccount(  # the channel is back
            pb.ValidateAccountRequest(account_id=ACCOUNT), wait_for_ready=True, timeout=10
        )
        assert (await stream.prepare(prepare(after), 5)).votes[0].vote == pb.YES
        assert (await stream.decide(abort(frozen), 5)).results[0].ok  # the abort its payment would get
        assert await states(stack, frozen, killed, after) == {
            frozen: LedgerState.ABORTED,  # served when thawed, then aborted
            killed: None,  # never reached the bank
            after: LedgerState.PREPARED,
        }
        assert (await stream.decide(abort(after), 5)).results[0].ok
    finally:
        stream.close()


async def test_a_stream_serves_many_more_batches_than_it_serves_at_once(stack):
    """The bank serves MAX_STREAM_BATCHES of a stream at once; a batch that it gives up on
    (1 ms to work in) or refuses frees its place like one it answers."""
    txn_ids = [txn() for _ in range(3 * MAX_STREAM_BATCHES)]
    batches = [pb.BankBatch(id=i, timeout_ms=1, prepare=prepare(t)) for i, t in enumerate(txn_ids)]
    batches += [pb.BankBatch(id=1000 + i, timeout_ms=5000) for i in range(MAX_STREAM_BATCHES)]  # refused
    batches.append(pb.BankBatch(id=9999, timeout_ms=5000, prepare=prepare(last := txn())))
    answers = await exchange(stack, batches)
    assert len(answers) == len(batches)
    assert answers[9999].prepare.votes[0].vote == pb.YES
    for i in range(len(txn_ids)):  # each given up on or prepared, never lost
        assert answers[i].WhichOneof("answer") in ("refused", "prepare")
        if answers[i].HasField("refused"):
            assert answers[i].refused.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    aborts = [pb.DecisionItem(txn_id=t, decision=pb.ABORT) for t in [*txn_ids, last]]
    answers = await exchange(
        stack, [pb.BankBatch(id=1, timeout_ms=5000, decide=pb.DecideBatchRequest(decisions=aborts))]
    )
    assert all(r.ok for r in answers[1].decide.results)
