"""BankStream's bookkeeping, against a stream that is a fake (the bank is not what these
tests are about; tests/test_bank_stream.py runs it against real banks): answers reach their
senders by id, and every way a stream ends fails its waiting batches as a call would."""

import asyncio

import grpc
import pytest

from backend.api import strife_pb2 as pb
from backend.gateway import bank_stream
from backend.gateway.bank_stream import BankStream, rpc_error

UNAVAILABLE, DEADLINE = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED


class FakeCall:
    """The gateway's end of one Bank.Batches stream: what was written, and answers to read."""

    def __init__(self, stuck: bool = False) -> None:
        self.stuck = stuck  # writes never finish (a bank that stopped reading)
        self.written: list[pb.BankBatch] = []
        self.answers: asyncio.Queue = asyncio.Queue()
        self.cancelled = False

    async def write(self, batch: pb.BankBatch) -> None:
        self.written.append(batch)
        if self.stuck:
            await asyncio.Event().wait()

    async def read(self):
        answer = await self.answers.get()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def cancel(self) -> None:
        self.cancelled = True


class FakeStub:
    def __init__(self, stuck: bool = False) -> None:
        self.stuck = stuck
        self.calls: list[FakeCall] = []

    def Batches(self) -> FakeCall:
        self.calls.append(FakeCall(self.stuck))
        return self.calls[-1]


def prepare(txn_id: str) -> pb.PrepareBatchRequest:
    return pb.PrepareBatchRequest(prepares=[pb.PrepareRequest(txn_id=txn_id)])


def voted(batch_id: int, *votes: int) -> pb.BankBatchAnswer:
    return pb.BankBatchAnswer(
        id=batch_id, prepare=pb.PrepareBatchResponse(votes=[pb.PrepareResponse(vote=v) for v in votes])
    )


async def sent(stub: FakeStub, count: int) -> list[pb.BankBatch]:
    """The batches written on the current stream, once there are `count`."""
    for _ in range(100):
        await asyncio.sleep(0)
        if stub.calls and len(stub.calls[-1].written) >= count:
            return stub.calls[-1].written
    raise AssertionError(f"{count} batches were not written")


async def code_of(awaitable) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await awaitable
    return failed.value.code()


async def test_answers_reach_their_senders_in_any_order_and_strays_are_dropped():
    stub = FakeStub()
    stream = BankStream(stub, "BankA")
    first = asyncio.ensure_future(stream.prepare(prepare("t1"), 5))
    second = asyncio.ensure_future(stream.prepare(prepare("t2"), 5))
    one, two = await sent(stub, 2)
    call = stub.calls[0]
    call.answers.put_nowait(voted(two.id, pb.NO))
    call.answers.put_nowait(voted(999, pb.YES))  # nobody's: dropped
    call.answers.put_nowait(voted(one.id, pb.YES))
    assert [v.vote for v in (await first).votes] == [pb.YES]
    assert [v.vote for v in (await second).votes] == [pb.NO]
    assert one.timeout_ms == 5000 and one.WhichOneof("batch") == "prepare"

    late = asyncio.ensure_future(stream.prepare(prepare("t3"), 0.05))
    assert await code_of(late) == DEADLINE
    call.answers.put_nowait(voted(one.id + 2, pb.YES))  # its answer, after its sender gave up: dropped
    after = asyncio.ensure_future(stream.prepare(prepare("t4"), 5))
    (*_, four) = await sent(stub, 4)
    call.answers.put_nowait(voted(four.id, pb.YES))
    assert (await after).votes[0].vote == pb.YES
    assert len(stub.calls) == 1  # one stream for all of it
    stream.close()


@pytest.mark.parametrize(
    "answer, code",
    [
        (pb.BankBatchAnswer(refused=pb.BatchRefused(code=3, message="no legs")), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.BankBatchAnswer(refused=pb.BatchRefused(code=0)), grpc.StatusCode.UNKNOWN),  # never an answer
        (pb.BankBatchAnswer(decide=pb.DecideBatchResponse()), grpc.StatusCode.INTERNAL),  # the wrong kind
    ],
)
async def test_a_refused_or_wrong_answer_fails_its_batch_alone(answer, code):
    stub = FakeStub()
    stream = BankStream(stub, "BankA")
    batch = asyncio.ensure_future(stream.prepare(prepare("t1"), 5))
    (written,) = await sent(stub, 1)
    answer.id = written.id
    stub.calls[0].answers.put_nowait(answer)
    assert await code_of(batch) == code
    assert not stub.calls[0].cancelled  # the stream goes on
    stream.close()


@pytest.mark.parametrize(
    "end, code",
    [
        (grpc.aio.EOF, UNAVAILABLE),  # the bank ended the stream
        (rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "too big"), UNAVAILABLE),  # not about the caller
        (rpc_error(grpc.StatusCode.INTERNAL, "Failed execute_batch"), UNAVAILABLE),
        (asyncio.CancelledError(), UNAVAILABLE),  # gRPC cancelled the call (its channel closed)
        (rpc_error(grpc.StatusCode.PERMISSION_DENIED, "role"), grpc.StatusCode.PERMISSION_DENIED),
    ],
)
async def test_a_stream_that_ends_fails_every_waiting_batch_at_once_and_the_next_opens_another(end, code):
    stub = FakeStub()
    stream = BankStream(stub, "BankA")
    waiting = [asyncio.ensure_future(stream.prepare(prepare(f"t{i}"), 30)) for i in range(3)]
    await sent(stub, 3)
    stub.calls[0].answers.put_nowait(end)
    for batch in waiting:
        assert await asyncio.wait_for(code_of(batch), 1) == code  # not after its 30 s
    assert stub.calls[0].cancelled

    again = asyncio.ensure_future(stream.prepare(prepare("t9"), 5))
    (written,) = await sent(stub, 1)
    assert len(stub.calls) == 2
    stub.calls[1].answers.put_nowait(voted(written.id, pb.YES))
    assert (await again).votes[0].vote == pb.YES
    stream.close()


async def test_closed_it_fails_what_waits_and_every_later_batch_and_leaves_no_task():
    stub = FakeStub()
    stream = BankStream(stub, "BankA")
    waiting = asyncio.ensure_future(stream.decide(pb.DecideBatchRequest(), 30))
    await sent(stub, 1)
    tasks = list(stream._tasks)
    stream.close()
    assert await asyncio.wait_for(code_of(waiting), 1) == UNAVAILABLE
    assert await code_of(stream.prepare(prepare("t2"), 5)) == UNAVAILABLE
    assert len(stub.calls) == 1  # no new stream after close
    await asyncio.sleep(0)
    assert all(task.done() for task in tasks)


async def test_batches_waiting_to_be_written_are_bounded():
    """The queue in front of a stream that does not drain: past MAX_QUEUED a batch fails
    UNAVAILABLE at once; a batch whose sender gave up is never written."""
    stub = FakeStub(stuck=True)
    stream = BankStream(stub, "BankA")
    senders = [asyncio.ensure_future(stream.prepare(prepare("t0"), 0.5))]
    await sent(stub, 1)  # the first is being written (forever) ...
    senders += [asyncio.ensure_future(stream.prepare(prepare(f"t{i}"), 0.5)) for i in range(bank_stream.MAX_QUEUED)]
    await asyncio.sleep(0.05)  # ... and these wait behind it
    assert await code_of(stream.prepare(prepare("one too many"), 0.5)) == UNAVAILABLE
    results = await asyncio.gather(*senders, return_exceptions=True)
    assert {r.code() for r in results} == {DEADLINE}
    assert len(stub.calls[0].written) == 1
    stream.close()
