"""The gateway's 2PC batches to one bank, as messages of one long-lived stream (Bank.Batches).

A message on an open stream costs the gateway and the bank a fraction of what a new call
costs them (the call's setup, metadata, deadline and TLS framing are paid once). Each batch
has an id; the bank answers each as soon as it is done, in any order, and the answer finds
its sender by the id.

A batch fails the way its own call would have:
- the stream ends or breaks (the bank went away): every batch still waiting gets UNAVAILABLE,
  and the next batch opens a new stream;
- no answer within its timeout: DEADLINE_EXCEEDED (a late answer is dropped; a batch whose
  sender gave up before it was written is not sent at all). The bank, too, gives up on a batch
  that long after it began serving it; but there is no message to cancel a batch, so a bank
  that was frozen serves, when thawed, the batches that reached it meanwhile. That is safe as
  a late call is: their payments were aborted, and the aborts follow on the same stream;
- the bank refused it: the code and message the bank's call would have ended with.
What a failed batch means is the caller's to decide, as before: a prepare without a vote
aborts its payment, and a decision without an acknowledgement is sent again.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import limits

# Batches waiting to be written: a frozen bank stops reading, and the stream's flow control
# then stops the writes. More fail UNAVAILABLE at once instead of queueing without end.
MAX_QUEUED = 64
_CODES = {code.value[0]: code for code in grpc.StatusCode if code is not grpc.StatusCode.OK}  # a refusal is never OK
# A stream that ends with one of these was refused for its caller (a wrong certificate role, a bank
# that has no Batches): its batches get that code. Any other end means the bank is gone.
KEPT_CODES = frozenset(
    {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED}
)

Request = pb.PrepareBatchRequest | pb.DecideBatchRequest


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """The error a unary call would have raised (callers look at its code())."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


class BankStream:
    def __init__(self, stub: pb_grpc.BankStub, bank: str) -> None:
        self._stub = stub
        self.bank = bank
        self._ids = itertools.count(1)
        self._call: grpc.aio.StreamStreamCall | None = None
        self._outbox: asyncio.Queue[tuple[pb.BankBatch, asyncio.Future]] = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future] = {}
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    async def prepare(self, request: pb.PrepareBatchRequest, timeout_s: float) -> pb.PrepareBatchResponse:
        return await self._send(pb.BankBatch(prepare=request), timeout_s)

    async def decide(self, request: pb.DecideBatchRequest, timeout_s: float) -> pb.DecideBatchResponse:
        return await self._send(pb.BankBatch(decide=request), timeout_s)

    async def _send(self, batch: pb.BankBatch, timeout_s: float):
        if self._closed:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down")
        if self._outbox.qsize() >= MAX_QUEUED:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, f"{self.bank} is not reading its stream")
        batch.id = next(self._ids)
        batch.timeout_ms = min(limits.MAX_BATCH_TIMEOUT_MS, max(1, math.ceil(timeout_s * 1000)))
        future = asyncio.get_running_loop().create_future()
        self._open()
        self._waiting[batch.id] = future
        self._outbox.put_nowait((batch, future))
        try:
            answer: pb.BankBatchAnswer = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, f"{self.bank} did not answer in {timeout_s} s") from None
        finally:
            self._waiting.pop(batch.id, None)
        kind = answer.WhichOneof("answer")
        if kind == "refused":
            code = _CODES.get(answer.refused.code, grpc.StatusCode.UNKNOWN)
            raise rpc_error(code, answer.refused.message)
        if kind != batch.WhichOneof("batch"):
            raise rpc_error(grpc.StatusCode.INTERNAL, f"{self.bank} answered a {batch.WhichOneof('batch')} with {kind}")
        return getattr(answer, kind)

    def _open(self) -> None:
        if self._call is not None:
            return
        call = self._stub.Batches()
        self._call = call
        self._tasks = [
            asyncio.create_task(self._pump(call, self._write(call))),
            asyncio.create_task(self._pump(call, self._read(call))),
        ]

    async def _pump(self, call: grpc.aio.StreamStreamCall, work: Awaitable[None]) -> None:
        """Run the writer or the reader of `call`; when it stops, the stream is over."""
        try:
            await work
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # stopped by _ended: the stream is dealt with
                raise
            self._ended(call, asyncio.CancelledError())  # gRPC cancelled the call itself (its channel closed)
        except BaseException as exc:  # noqa: BLE001 - every waiter gets it
            self._ended(call, exc)

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            batch, future = await self._outbox.get()
            if not future.done():  # its sender gave up before it left: never sent
                await call.write(batch)

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            answer = await call.read()
            if answer is grpc.aio.EOF:
                raise rpc_error(grpc.StatusCode.UNAVAILABLE, f"{self.bank} ended the stream")
            future = self._waiting.get(answer.id)
            if future is not None and not future.done():
                future.set_result(answer)

    def _ended(self, call: grpc.aio.StreamStreamCall, exc: BaseException) -> None:
        """The stream `call` is over: fail what waits on it; the next batch opens another."""
        current, self._call = self._call, None
        if current is None or current is not call:  # an earlier stream's task, late
            self._call = current
            return
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._tasks = []
        current.cancel()
        error = _stream_error(self.bank, exc)
        waiting, self._waiting = self._waiting, {}
        self._outbox = asyncio.Queue()
        for future in waiting.values():
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        """For good (the gateway stops): what waits fails, and later batches fail at once."""
        self._closed = True
        if self._call is not None:
            self._ended(self._call, rpc_error(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down"))


def _stream_error(bank: str, exc: BaseException) -> grpc.aio.AioRpcError:
    """What each batch of a stream that ended gets. The stream's end is rarely about one
    batch: the bank went away (or the send failed because it did: gRPC then says INTERNAL,
    "Failed execute_batch"), so UNAVAILABLE, as a unary call to a bank that is gone.
    Only a refusal of the caller itself keeps its code."""
    if isinstance(exc, grpc.aio.AioRpcError):
        if exc.code() in KEPT_CODES:
            return exc
        return rpc_error(
            grpc.StatusCode.UNAVAILABLE, f"the stream to {bank} ended: {exc.code().name} {exc.details()}"[:300]
        )
    return rpc_error(grpc.StatusCode.UNAVAILABLE, f"the stream to {bank} broke: {type(exc).__name__} {exc}"[:300])
