"""The gateway's 2PC batches to one bank, as messages of one long-lived stream (Bank.Batches).

A message on an open stream costs the gateway and the bank a fraction of what a new call
costs them (the call's setup, metadata, deadline and TLS framing are paid once). Each batch
has an id; the bank answers each as soon as it is done, in any order, and the answer finds
its sender by the id.

A batch fails the way its own call would have:
- the stream ends or breaks (the bank went away): every batch still waiting gets the
  stream's error (UNAVAILABLE), and the next batch opens a new stream;
- no answer within its timeout: DEADLINE_EXCEEDED (a late answer is dropped; a batch whose
  sender gave up before it was written is not sent at all). The bank gives up then too;
- the bank refused it: the code and message the bank's call would have ended with.
What a failed batch means is the caller's to decide, as before: a prepare without a vote
aborts its payment, and a decision without an acknowledgement is sent again.
"""

from __future__ import annotations

import asyncio
import itertools
import math

import grpc

from backend.api import strife_pb2 as pb
from backend.api import strife_pb2_grpc as pb_grpc
from backend.common import limits

# Batches waiting to be written: a frozen bank stops reading, and the stream's flow control
# then stops the writes. More fail UNAVAILABLE at once instead of queueing without end.
MAX_QUEUED = 64
_CODES = {code.value[0]: code for code in grpc.StatusCode if code is not grpc.StatusCode.OK}  # a refusal is never OK

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

    async def prepare(self, request: pb.PrepareBatchRequest, timeout_s: float) -> pb.PrepareBatchResponse:
        return await self._send(pb.BankBatch(prepare=request), timeout_s)

    async def decide(self, request: pb.DecideBatchRequest, timeout_s: float) -> pb.DecideBatchResponse:
        return await self._send(pb.BankBatch(decide=request), timeout_s)

    async def _send(self, batch: pb.BankBatch, timeout_s: float):
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
        self._tasks = [asyncio.create_task(self._write(call)), asyncio.create_task(self._read(call))]

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            while True:
                batch, future = await self._outbox.get()
                if not future.done():  # its sender gave up before it left: never sent
                    await call.write(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every waiter gets it
            # A send fails when the stream is gone (gRPC says INTERNAL: "Failed execute_batch").
            self._ended(call, rpc_error(grpc.StatusCode.UNAVAILABLE, f"the stream to {self.bank} broke: {exc}"[:300]))

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            while True:
                answer = await call.read()
                if answer is grpc.aio.EOF:
                    raise rpc_error(grpc.StatusCode.UNAVAILABLE, f"{self.bank} ended the stream")
                future = self._waiting.get(answer.id)
                if future is not None and not future.done():
                    future.set_result(answer)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every waiter gets it
            self._ended(call, exc)

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
        if not isinstance(exc, grpc.aio.AioRpcError):
            exc = rpc_error(grpc.StatusCode.UNAVAILABLE, f"the stream to {self.bank} broke: {type(exc).__name__}")
        waiting, self._waiting = self._waiting, {}
        self._outbox = asyncio.Queue()
        for future in waiting.values():
            if not future.done():
                future.set_exception(exc)

    def close(self) -> None:
        if self._call is not None:
            self._ended(self._call, rpc_error(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down"))
